import os, base64
from subprocess import run as r
exec(base64.b64decode("aWQ="))
open("~/.x", "w")
getattr(os, "sy"+"stem")
x = r"""raw\"""
