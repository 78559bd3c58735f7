"""The FastAPI reference of wrk/bench.py: the post's thirteen upload and download endpoints, at ferry's paths.

    python3 -m pip install -r wrk/requirements-fastapi.txt
    FERRY_FASTAPI_DATA=/dev/shm/x python3 -m uvicorn fastapi_app:app --app-dir wrk --workers 2 --port 8001

Each handler is written the way the FastAPI post wrote it: `async def` unless the name says sync, raw bodies read
with `request.stream()`, multipart through `UploadFile`, writes with `open()` or aiofiles, downloads with
`StreamingResponse` or `FileResponse`. So that the same wrk scripts and request bodies work against it, the paths,
the multipart field (`file`) and the JSON document (`{"filename", "data"}`, base64) are ferry's, and every upload
is stored under a new id that the downloads take, as in ferry. Unlike ferry, it hashes nothing, keeps no metadata
file and never fsyncs (ferry runs with `--fsync false` in the benchmark); like ferry, nothing half-written is
ever visible under an id (files are written under a temporary name and renamed).

Files live in $FERRY_FASTAPI_DATA (default: a `fastapi-data` directory in the working directory). Starlette
spools multipart parts over 1 MiB to the system temp directory; bench.py points TMPDIR at the data directory so
that spooled parts land on the same kind of storage.
"""

import base64
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import aiofiles
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel

DATA = Path(os.environ.get("FERRY_FASTAPI_DATA", "fastapi-data"))
DATA.mkdir(parents=True, exist_ok=True)
CHUNK_SIZE = 256 << 10  # ferry's download chunk, and the streamed multipart strategies' read size
ID = re.compile(r"[0-9a-f]{32}")

app = FastAPI(title="ferry's FastAPI reference", docs_url=None, redoc_url=None)


def new_file() -> tuple[str, Path, Path]:
    """A new id, the temporary path to write and the final path to rename it to."""
    file_id = uuid.uuid4().hex
    return file_id, DATA / f".{file_id}.part", DATA / file_id


def stored(file_id: str, tmp: Path, final: Path, filename: str | None) -> JSONResponse:
    os.replace(tmp, final)
    return JSONResponse({"id": file_id, "filename": filename, "size": final.stat().st_size}, status_code=201)


def raw_filename(request: Request) -> str:
    return request.query_params.get("filename") or "upload.bin"


# Raw body -----------------------------------------------------------------------------------------------------


@app.post("/files/upload/stream/async_read_and_memory_write", status_code=201)
async def upload_stream_memory_write(request: Request):
    """The post's NamedTemporaryFile: chunks from request.stream() written to a buffered temp file, kept."""
    file_id, _, final = new_file()
    with tempfile.NamedTemporaryFile(dir=DATA, prefix=".", suffix=".part", delete=False) as f:
        async for chunk in request.stream():
            f.write(chunk)
    return stored(file_id, Path(f.name), final, raw_filename(request))


@app.post("/files/upload/stream/async_read_and_disk_write", status_code=201)
async def upload_stream_disk_write(request: Request):
    """Chunks from request.stream() written with blocking writes, on the event loop."""
    file_id, tmp, final = new_file()
    with open(tmp, "wb") as f:
        async for chunk in request.stream():
            f.write(chunk)
    return stored(file_id, tmp, final, raw_filename(request))


@app.post("/files/upload/stream/async_read_and_async_write", status_code=201)
async def upload_stream_async_write(request: Request):
    """Chunks from request.stream() written with aiofiles (each write on the thread pool)."""
    file_id, tmp, final = new_file()
    async with aiofiles.open(tmp, "wb") as f:
        async for chunk in request.stream():
            await f.write(chunk)
    return stored(file_id, tmp, final, raw_filename(request))


# Multipart (Starlette parses it; the part is in a SpooledTemporaryFile: memory up to 1 MiB, then disk) --------


@app.post("/files/upload/single", status_code=201)
async def upload_single(file: UploadFile):
    """UploadFile read whole, written with aiofiles."""
    file_id, tmp, final = new_file()
    content = await file.read()
    async with aiofiles.open(tmp, "wb") as f:
        await f.write(content)
    return stored(file_id, tmp, final, file.filename)


@app.post("/files/upload/single/sync", status_code=201)
def upload_single_sync(file: UploadFile = File(...)):
    """A sync handler (FastAPI runs it on its thread pool): UploadFile read whole, written with open()."""
    file_id, tmp, final = new_file()
    content = file.file.read()
    with open(tmp, "wb") as f:
        f.write(content)
    return stored(file_id, tmp, final, file.filename)


@app.post("/files/upload/single/stream", status_code=201)
async def upload_single_stream(file: UploadFile):
    """UploadFile read in chunks, written with aiofiles."""
    file_id, tmp, final = new_file()
    async with aiofiles.open(tmp, "wb") as f:
        while chunk := await file.read(CHUNK_SIZE):
            await f.write(chunk)
    return stored(file_id, tmp, final, file.filename)


@app.post("/files/upload/single/stream/async_read_sync_write", status_code=201)
async def upload_single_stream_sync_write(file: UploadFile):
    """UploadFile read in chunks, written with blocking writes on the event loop."""
    file_id, tmp, final = new_file()
    with open(tmp, "wb") as f:
        while chunk := await file.read(CHUNK_SIZE):
            f.write(chunk)
    return stored(file_id, tmp, final, file.filename)


@app.post("/files/upload/single/stream/sync_read_sync_write", status_code=201)
def upload_single_stream_sync(file: UploadFile = File(...)):
    """A sync handler: the spooled part copied to the file with shutil.copyfileobj."""
    file_id, tmp, final = new_file()
    with open(tmp, "wb") as f:
        shutil.copyfileobj(file.file, f, CHUNK_SIZE)
    return stored(file_id, tmp, final, file.filename)


# JSON ---------------------------------------------------------------------------------------------------------


class Base64Upload(BaseModel):
    filename: str | None = None
    data: str
    content_type: str | None = None


@app.post("/files/upload/raw/json/base64decode", status_code=201)
async def upload_base64(doc: Base64Upload):
    """The JSON document parsed by pydantic, data decoded whole, written with aiofiles."""
    file_id, tmp, final = new_file()
    try:
        content = base64.b64decode(doc.data, validate=True)
    except ValueError as e:
        raise HTTPException(400, f"invalid base64: {e}") from e
    async with aiofiles.open(tmp, "wb") as f:
        await f.write(content)
    return stored(file_id, tmp, final, doc.filename)


# Downloads ----------------------------------------------------------------------------------------------------


def existing(file_id: str) -> Path:
    path = DATA / file_id
    if not ID.fullmatch(file_id) or not path.is_file():
        raise HTTPException(404, "no such file")
    return path


def headers(path: Path, file_id: str) -> dict:
    return {"Content-Length": str(path.stat().st_size), "Content-Disposition": f'attachment; filename="{file_id}"'}


@app.get("/files/download/stream/sync_read/{file_id}")
async def download_stream_sync_read(file_id: str):
    """StreamingResponse over a sync generator of open() reads (Starlette iterates it on its thread pool)."""
    path = existing(file_id)

    def chunks():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers(path, file_id))


@app.get("/files/download/stream/async_read/{file_id}")
async def download_stream_async_read(file_id: str):
    """StreamingResponse over an async generator of aiofiles reads."""
    path = existing(file_id)

    async def chunks():
        async with aiofiles.open(path, "rb") as f:
            while chunk := await f.read(CHUNK_SIZE):
                yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers(path, file_id))


@app.get("/files/download/file/{file_id}")
async def download_file(file_id: str):
    """FileResponse from an async handler (Starlette reads 64 KiB at a time through anyio's thread pool)."""
    path = existing(file_id)
    return FileResponse(path, media_type="application/octet-stream", filename=file_id)


@app.get("/files/download/file/sync/{file_id}")
def download_file_sync(file_id: str):
    """FileResponse from a sync handler (the handler itself runs on the thread pool)."""
    path = existing(file_id)
    return FileResponse(path, media_type="application/octet-stream", filename=file_id)


@app.get("/health")
async def health():
    return {"status": "ok"}
