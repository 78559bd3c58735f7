//! The binary as people run it: its commands, its options, and how it says what went wrong.

use std::process::Command;

use crate::helpers::spawn_app;

fn ferry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry")).args(args).output().expect("ferry runs")
}

#[tokio::test]
async fn healthcheck_exits_zero_against_a_healthy_server() {
    let app = spawn_app().await;
    let addr = app.addr.to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["healthcheck", "--addr", &addr])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn healthcheck_exits_non_zero_against_a_closed_port_or_an_unhealthy_server() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["healthcheck", "--addr", &closed])).await.unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.starts_with("ferry: unhealthy: nothing listens on 127.0.0.1:"), "{said}");

    let app = spawn_app().await;
    std::fs::remove_dir_all(app.tmp_dir()).unwrap();
    let addr = app.addr.to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["healthcheck", "--addr", &addr])).await.unwrap();
    assert!(!out.status.success(), "a server whose data dir cannot be written is not healthy");
}

#[test]
fn openapi_prints_the_committed_document() {
    let out = ferry(&["openapi"]);
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    assert!(printed == committed);
}

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "should have failed");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(said.lines().count(), 1, "one line, not a trace: {said}");
    assert!(!said.contains("Os {") && !said.contains("panicked"), "{said}");
    said.trim_end().to_owned()
}

#[test]
fn a_busy_address_is_named_in_one_line() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let out = ferry(&["serve", "--addr", &addr, "--data-dir", data.path().to_str().unwrap()]);
    assert_eq!(
        one_line_error(&out),
        format!("ferry: cannot listen on {addr}: the address is already in use (is another ferry running?)")
    );
}

#[test]
fn a_data_dir_that_is_a_file_is_named_in_one_line() {
    let data = tempfile::NamedTempFile::new().unwrap();
    let path = data.path().to_str().unwrap();
    let out = ferry(&["serve", "--addr", "127.0.0.1:0", "--data-dir", path]);
    assert_eq!(one_line_error(&out), format!("ferry: cannot use data directory {path}: it is not a directory"));
}

#[test]
fn each_command_takes_its_options_after_its_name_and_lists_only_its_own() {
    let serve_help = String::from_utf8(ferry(&["serve", "--help"]).stdout).unwrap();
    assert!(serve_help.contains("--data-dir") && serve_help.contains("--max-upload-bytes"), "{serve_help}");
    let probe_help = String::from_utf8(ferry(&["healthcheck", "--help"]).stdout).unwrap();
    assert!(probe_help.contains("--addr") && probe_help.contains("--timeout"), "{probe_help}");
    assert!(!probe_help.contains("--data-dir") && !probe_help.contains("--fsync"), "{probe_help}");
    let openapi_help = String::from_utf8(ferry(&["openapi", "--help"]).stdout).unwrap();
    assert!(!openapi_help.contains("--addr"), "{openapi_help}");
}

#[test]
fn healthcheck_says_when_a_server_does_not_answer_in_time() {
    // a listener that never accepts: the connection is made by the kernel, and no answer ever comes
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = ferry(&["healthcheck", "--addr", &addr, "--timeout", "500ms"]);
    assert_eq!(one_line_error(&out), format!("ferry: unhealthy: no answer from {addr} within 0.5 s"));
}

#[test]
fn openapi_into_a_pipe_closed_early_is_not_a_crash() {
    use std::{io::Read, process::Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // the reader has gone, as `ferry openapi | head -c 16` leaves it
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serving_beyond_loopback_without_access_control_is_refused_in_one_line() {
    let data = tempfile::tempdir().unwrap();
    let out = ferry(&["serve", "--addr", "0.0.0.0:0", "--data-dir", data.path().to_str().unwrap()]);
    let said = one_line_error(&out);
    assert!(said.starts_with("ferry: refusing to listen on 0.0.0.0:0 without access control"), "{said}");
    assert!(said.contains("--allow-anonymous"), "{said}");
}

#[test]
fn token_create_prints_the_token_once_and_list_and_revoke_use_the_name() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let out = ferry(&["token", "create", "--name", "ci", "--scopes", "upload,read", "--data-dir", dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ferry_"), "{token}");
    let stored = std::fs::read_to_string(data.path().join("tokens")).unwrap();
    assert!(stored.starts_with("ci upload,read ") && !stored.contains(&token), "{stored}");
    let out = ferry(&["token", "list", "--data-dir", dir]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ci\tupload,read\n");
    assert!(ferry(&["token", "revoke", "ci", "--data-dir", dir]).status.success());
    assert_eq!(one_line_error(&ferry(&["token", "revoke", "ci", "--data-dir", dir])).split(':').next(), Some("ferry"));
    assert!(ferry(&["token", "list", "--data-dir", dir]).stdout.is_empty());
}
