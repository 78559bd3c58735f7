//! A file's content on its way into the bucket.

use std::{collections::VecDeque, io, sync::Arc};

use bytes::Bytes;
use object_store::{
    ObjectStoreExt, PutPayload,
    multipart::{MultipartStore, PartId},
};
use tokio::{sync::OwnedSemaphorePermit, task::JoinHandle};

use super::{FileId, Marker, PART, PARTS_IN_FLIGHT, S3, store};

/// S3 allows this many parts to an upload: parts grow beyond [`PART`] for files that would need more.
const MAX_PARTS: u64 = 10_000;

/// A file's content on its way into the store: a single PUT when it fits one part, a multipart upload otherwise
/// (`uploads/<id>` marks it until it completes). Dropped before [`ObjectWriter::finish`] has completed it, it
/// aborts the multipart upload, so nothing is ever visible from an upload that failed or was cut.
pub struct ObjectWriter {
    s3: Arc<S3>,
    id: FileId,
    buffer: Vec<Bytes>,
    buffered: usize,
    part: usize,
    multipart: Option<Multipart>,
}

struct Multipart {
    upload: String,
    /// Parts on their way, oldest first, and the ids of those that arrived.
    sending: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    sent: Vec<PartId>,
    /// One of the few uploads that may hold parts in memory at once (see [`super::STREAMING_UPLOADS`]).
    _turn: OwnedSemaphorePermit,
}

impl ObjectWriter {
    /// For a file of at most `limit` bytes.
    pub(super) fn new(s3: Arc<S3>, id: FileId, limit: u64) -> ObjectWriter {
        let part = (PART as u64).max(limit.div_ceil(MAX_PARTS)) as usize;
        ObjectWriter { s3, id, buffer: Vec::new(), buffered: 0, part, multipart: None }
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.buffered += chunk.len();
        self.buffer.push(chunk);
        if self.buffered >= self.part {
            self.send_part().await?;
        }
        Ok(())
    }

    /// Sends what is buffered (one part), waiting first for the oldest part when two are on their way. The first
    /// part begins the multipart upload, once the upload has its turn.
    async fn send_part(&mut self) -> io::Result<()> {
        let key = self.s3.keys.content(self.id);
        if self.multipart.is_none() {
            let turn = self.s3.streaming.clone().acquire_owned().await.map_err(io::Error::other)?;
            let upload = self.s3.store.create_multipart(&key).await.map_err(store)?;
            let marker = serde_json::to_vec(&Marker { multipart: upload.clone() }).map_err(io::Error::other)?;
            // set before the marker is written: from here on, dropping the writer aborts the upload
            self.multipart = Some(Multipart { upload, sending: VecDeque::new(), sent: Vec::new(), _turn: turn });
            self.s3.store.put(&self.s3.keys.marker(self.id), PutPayload::from(marker)).await.map_err(store)?;
        }
        let multipart = self.multipart.as_mut().expect("begun above");
        if multipart.sending.len() >= PARTS_IN_FLIGHT {
            let oldest = multipart.sending.front_mut().expect("parts in flight");
            let sent = oldest.await.map_err(io::Error::other)?.map_err(store)?;
            multipart.sending.pop_front();
            multipart.sent.push(sent);
        }
        let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
        self.buffered = 0;
        let (s3, index, upload) =
            (self.s3.clone(), multipart.sent.len() + multipart.sending.len(), multipart.upload.clone());
        let part = self.s3.spawn(async move { s3.store.put_part(&key, &upload, index, payload).await });
        multipart.sending.push_back(part);
        Ok(())
    }

    /// Sends the rest and completes the object; it is in the store, and still has no row, when this returns.
    /// Whether a marker was written (the upload went multipart): it is removed once the row is written.
    pub async fn finish(mut self) -> io::Result<bool> {
        let key = self.s3.keys.content(self.id);
        if self.multipart.is_none() {
            let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
            return self.s3.store.put(&key, payload).await.map_err(store).map(|_| false);
        }
        if self.buffered > 0 {
            self.send_part().await?;
        }
        // the upload stays in `self` until it is complete, so that a failure or a cut here aborts it
        let multipart = self.multipart.as_mut().expect("begun");
        while let Some(part) = multipart.sending.front_mut() {
            let sent = part.await.map_err(io::Error::other)?.map_err(store)?;
            multipart.sending.pop_front();
            multipart.sent.push(sent);
        }
        let parts = multipart.sent.clone();
        self.s3.store.complete_multipart(&key, &multipart.upload, parts).await.map_err(store)?;
        self.multipart = None;
        Ok(true)
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        let Some(multipart) = self.multipart.take() else { return };
        let (s3, id) = (self.s3.clone(), self.id);
        self.s3.spawn(async move {
            for part in &multipart.sending {
                part.abort();
            }
            let key = s3.keys.content(id);
            match s3.store.abort_multipart(&key, &multipart.upload).await {
                Ok(()) => {
                    let _ = s3.store.delete(&s3.keys.marker(id)).await;
                }
                Err(err) => log::warn!("aborting the upload of {id} failed: {err}; the sweep will abort it"),
            }
        });
    }
}
