"""Code shared by every service of the wine MLOps stack.

Nothing here does work at import time: no tracking URI is set, no model is loaded and no
logging is configured until a service asks for it.
"""
