//! A file's content on its way into the bucket.

use std::{collections::VecDeque, io, sync::Arc};

use bytes::Bytes;
use object_store::{
    ObjectStoreExt, PutPayload,
    multipart::{MultipartStore, PartId},
};
use tokio::task::JoinHandle;

use super::{FileId, Marker, PART, PARTS_IN_FLIGHT, S3, store};

/// A file's content on its way into the store: a single PUT when it fits one part, a multipart upload otherwise
/// (`uploads/<id>` marks it until it completes). Dropped before [`ObjectWriter::finish`], it aborts the multipart
/// upload, so nothing is ever visible from an upload that failed.
pub struct ObjectWriter {
    s3: Arc<S3>,
    id: FileId,
    buffer: Vec<Bytes>,
    buffered: usize,
    multipart: Option<Multipart>,
}

struct Multipart {
    upload: String,
    /// Parts on their way, oldest first, and the ids of those that arrived.
    sending: VecDeque<JoinHandle<object_store::Result<PartId>>>,
    sent: Vec<PartId>,
}

impl ObjectWriter {
    pub(super) fn new(s3: Arc<S3>, id: FileId) -> ObjectWriter {
        ObjectWriter { s3, id, buffer: Vec::new(), buffered: 0, multipart: None }
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.buffered += chunk.len();
        self.buffer.push(chunk);
        if self.buffered >= PART {
            self.send_part().await?;
        }
        Ok(())
    }

    /// Sends what is buffered (one part), waiting first for the oldest part when two are on their way.
    async fn send_part(&mut self) -> io::Result<()> {
        let key = self.s3.keys.content(self.id);
        if self.multipart.is_none() {
            let upload = self.s3.store.create_multipart(&key).await.map_err(store)?;
            let marker = serde_json::to_vec(&Marker { multipart: upload.clone() }).map_err(io::Error::other)?;
            // set before the marker is written: from here on, dropping the writer aborts the upload
            self.multipart = Some(Multipart { upload, sending: Default::default(), sent: Vec::new() });
            self.s3.store.put(&self.s3.keys.marker(self.id), PutPayload::from(marker)).await.map_err(store)?;
        }
        let multipart = self.multipart.as_mut().expect("begun above");
        if multipart.sending.len() >= PARTS_IN_FLIGHT {
            let oldest = multipart.sending.pop_front().expect("parts in flight");
            multipart.sent.push(oldest.await.map_err(io::Error::other)?.map_err(store)?);
        }
        let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
        self.buffered = 0;
        let (s3, index, upload) =
            (self.s3.clone(), multipart.sent.len() + multipart.sending.len(), multipart.upload.clone());
        let handle = self.s3.io.0.as_ref().expect("runtime until dropped").handle();
        multipart
            .sending
            .push_back(handle.spawn(async move { s3.store.put_part(&key, &upload, index, payload).await }));
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
        let mut multipart = self.multipart.take().expect("begun");
        let result: io::Result<()> = async {
            while let Some(part) = multipart.sending.pop_front() {
                multipart.sent.push(part.await.map_err(io::Error::other)?.map_err(store)?);
            }
            let parts = std::mem::take(&mut multipart.sent);
            self.s3.store.complete_multipart(&key, &multipart.upload, parts).await.map_err(store)?;
            Ok(())
        }
        .await;
        if result.is_err() {
            self.multipart = Some(multipart); // dropped below: aborted
        }
        result.map(|()| true)
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        let Some(multipart) = self.multipart.take() else { return };
        let (s3, id) = (self.s3.clone(), self.id);
        let handle = self.s3.io.0.as_ref().expect("runtime until dropped").handle().clone();
        handle.spawn(async move {
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
