#!/usr/bin/env python3
"""Uploads a file to ferry with tuspy (the tus project's Python client) and prints the stored file's id.

    tuspy_upload.py http://127.0.0.1:8000/files/tus/ FILE CHUNK_BYTES [--checksum]

CHUNK_BYTES 0 sends the whole file in one PATCH.
"""
import sys

import requests
from tusclient import client

url, path, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]) or sys.maxsize
uploader = client.TusClient(url).uploader(
    path,
    chunk_size=chunk,
    retries=60,
    retry_delay=1,
    metadata={"filename": "tuspy.bin", "filetype": "application/octet-stream"},
    upload_checksum="--checksum" in sys.argv,
)
uploader.upload()
# the last PATCH's answer named the stored file; HEAD tells it again
head = requests.head(uploader.url, headers={"Tus-Resumable": "1.0.0"}, timeout=30)
print(head.headers["Ferry-File-Id"])
