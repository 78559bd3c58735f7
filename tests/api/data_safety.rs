//! Data at rest: one server per data directory, damaged files quarantined and never deleted, content that does
//! not match its metadata never served as if it did, `ferry fsck`, and the right status for storage failures.

use std::{ffi::OsStr, time::Duration};

use ferry::upload::Strategy;
use tokio::net::TcpStream;

use crate::helpers::{ChildServer, TestApp, eventually, names_in, read_response, request_head, run_ferry, send_all};

// One data directory, one server

#[tokio::test]
async fn a_second_ferry_on_the_same_data_dir_is_refused_and_leaves_the_first_ones_uploads_alone() {
    let data = tempfile::tempdir().unwrap();
    let first = ChildServer::start(data.path(), &[], &[]);
    let tmp = data.path().join("tmp");

    // an upload under way on the first server: half its body sent, its temp file in tmp/
    let mut upload = TcpStream::connect(first.addr).await.unwrap();
    let strategy = Strategy::StreamDiskWrite;
    let head = request_head(strategy, "application/octet-stream", "Content-Length: 2000\r\n");
    send_all(&mut upload, head.as_bytes()).await;
    send_all(&mut upload, &[b'a'; 1000]).await;
    assert!(eventually(|| names_in(&tmp).len() == 1).await, "the upload has a temp file");

    let second = run_ferry(&[
        OsStr::new("--addr"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        data.path().as_os_str(),
    ])
    .await;
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    let expected = format!(
        "ferry: cannot use data directory {}: another ferry (pid {}) is using it\n",
        data.path().display(),
        first.child.id()
    );
    assert!(said.ends_with(&expected), "{said}");
    assert_eq!(names_in(&tmp).len(), 1, "the second ferry swept the first one's upload");

    send_all(&mut upload, &[b'b'; 1000]).await;
    let response = read_response(&mut upload, Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
}

#[tokio::test]
async fn the_lock_goes_with_the_process_that_held_it() {
    let data = tempfile::tempdir().unwrap();
    let mut first = ChildServer::start(data.path(), &[], &[]);
    first.child.kill().unwrap(); // SIGKILL: no chance to clean up
    first.child.wait().unwrap();
    let second = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&second, data.path());
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    let pid = std::fs::read_to_string(data.path().join(".lock")).unwrap();
    assert_eq!(pid.trim(), second.child.id().to_string(), "the lock file names its holder");
}
