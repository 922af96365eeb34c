"""The packaging example's job: runs in the copy of its workdir, after setup, with a secret.

It prints a digest of HF_TOKEN, never the token: logs are read by more people than secrets are.
"""

import hashlib
import os
import pathlib

token = os.environ.get("HF_TOKEN", "")
print("running in", os.getcwd())
print("setup left:", pathlib.Path("setup-done").read_text().strip())
print("HF_TOKEN sha256:", hashlib.sha256(token.encode()).hexdigest()[:16] if token else "unset")
