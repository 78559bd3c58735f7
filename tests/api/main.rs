//! The API suite: a real ferry on a loopback port per test (or the real binary, where the process matters).

use ferry::{download::Reader, upload::Strategy};
use rstest_reuse::template;

mod auth;
mod cli;
mod connections;
mod data_safety;
mod downloads;
mod faults;
mod files;
mod helpers;
mod hostile;
mod logs;
mod migration;
mod openapi;
mod properties;
mod restart;
mod tus;
mod upload_errors;
mod uploads;

// The templates below list every strategy; these fail to compile when a strategy is added to ferry's tables
// and not here.
const _: () = assert!(Strategy::ALL.len() == 9);
const _: () = assert!(Reader::ALL.len() == 5);

/// One test case per upload strategy, so that a failure names its strategy.
#[template]
#[rstest::rstest]
#[tokio::test]
async fn each_upload(
    #[values(
        Strategy::StreamMemoryWrite,
        Strategy::StreamDiskWrite,
        Strategy::StreamAsyncWrite,
        Strategy::Single,
        Strategy::SingleSync,
        Strategy::SingleStream,
        Strategy::SingleStreamSyncWrite,
        Strategy::SingleSpooled,
        Strategy::JsonBase64
    )]
    strategy: Strategy,
) {
}

/// One test case per download strategy, so that a failure names its strategy.
#[template]
#[rstest::rstest]
#[tokio::test]
async fn each_download(
    #[values(Reader::SyncRead, Reader::AsyncRead, Reader::NamedFile, Reader::NamedFileSync, Reader::Cached)]
    reader: Reader,
) {
}
