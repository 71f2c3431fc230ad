"""``python -m model_training`` runs one training session."""

import sys

from model_training.cli import main

sys.exit(main())
