#!/usr/bin/env python3
"""make_http_postdata: the request bodies the wrk scripts send, made from any file.

    python3 wrk/postdata.py photo.jpg        # writes photo.jpg.multipart and photo.jpg.json beside it

The multipart body uses the benchmark's boundary, so its Content-Type is
`multipart/form-data; boundary=gouchicao0123456789`; the JSON body is ferry's base64 upload document.
"""

import base64
import json
import os
import sys

BOUNDARY = "gouchicao0123456789"
MULTIPART_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart_body(data: bytes, filename: str) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def json_body(data: bytes, filename: str) -> bytes:
    return json.dumps({"filename": filename, "data": base64.b64encode(data).decode()}).encode()


def make(path: str) -> tuple[str, str]:
    """Writes PATH.multipart and PATH.json; returns their paths."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    outputs = (f"{path}.multipart", f"{path}.json")
    for out, body in zip(outputs, (multipart_body(data, name), json_body(data, name))):
        with open(out, "wb") as f:
            f.write(body)
    return outputs


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for out in make(sys.argv[1]):
        print(out)
