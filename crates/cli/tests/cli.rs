//! The real `numashm` binary against real regions.

use std::io::{Seek, SeekFrom, Write};

use assert_cmd::Command;

fn numashm() -> Command {
    Command::cargo_bin("numashm").unwrap()
}

fn path(tag: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/shm/numashm-cli-test-{tag}-{}", std::process::id()))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_inspect_grow_rm_round_trip() {
    let p = path("roundtrip");
    let out = numashm()
        .args(["create"])
        .arg(&p)
        .args(["--size", "4M", "--max-size", "64M", "--node", "0", "--populate", "--classes", "1k:64,16k:16"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("4 MiB"));

    let out = numashm().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["len"], 4 << 20);
    assert_eq!(v["epoch"], 0);
    assert_eq!(v["placement"]["policy"], "Bind");
    assert_eq!(v["pages"]["per_node"][0]["node"], 0);
    assert_eq!(v["pages"]["per_node"][0]["pages"], 1024, "populated pages measured on node 0");
    assert_eq!(v["classes"][1]["slot_size"], 16384);
    assert_eq!(v["rings"].as_array().unwrap().len(), 2);
    assert!(v["peers"].as_array().unwrap().is_empty(), "the creator detached; the inspector did not join");

    let out = numashm().arg("grow").arg(&p).args(["--to", "8M"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("8 MiB") && text.contains("growth epoch"), "{text}");

    let out = numashm().arg("grow").arg(&p).args(["--to", "4M"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shrink"));

    numashm().arg("rm").arg(&p).assert().success();
    assert!(!p.exists());
}

#[test]
fn inspect_names_the_bad_field_of_a_corrupt_file() {
    let p = path("corrupt");
    numashm().arg("create").arg(&p).args(["--size", "1M", "--classes", "1k:16"]).assert().success();
    let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.seek(SeekFrom::Start(8)).unwrap();
    f.write_all(&[9, 0, 0, 0]).unwrap();
    drop(f);
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("version") && err.contains(&p.display().to_string()), "{err}");
    // rm refuses what is not a valid region unless forced.
    numashm().arg("rm").arg(&p).assert().code(1);
    numashm().arg("rm").arg(&p).arg("--force").assert().success();
}

#[test]
fn inspect_of_a_foreign_file_is_a_clear_error() {
    let p = path("foreign");
    std::fs::write(&p, vec![0x5a; 8192]).unwrap();
    let out = numashm().arg("inspect").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("magic"));
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    numashm().arg("frobnicate").assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--size", "12Q"]).assert().code(2);
    numashm().args(["create", "/dev/shm/x", "--size", "1M", "--classes", "1k"]).assert().code(2);
}

#[test]
fn create_too_small_for_the_classes_says_how_much_is_needed() {
    let p = path("small");
    let out = numashm().arg("create").arg(&p).args(["--size", "64k"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("size") && err.contains("need"), "{err}");
    assert!(!p.exists());
}

#[test]
fn inspect_shows_a_live_peer_without_joining() {
    let p = path("live");
    numashm().arg("create").arg(&p).args(["--size", "1M", "--classes", "1k:16"]).assert().success();
    // A live peer: this test process attaches and sends one message.
    let seg = numashm::Segment::attach(&p).unwrap();
    let tx = seg.sender(0).unwrap();
    tx.send(tx.alloc(10).unwrap()).map_err(|e| e.error).unwrap();
    let out = numashm().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["pid"], std::process::id());
    assert_eq!(peers[0]["alive"], true);
    assert_eq!(peers[0]["sent"], 1);
    assert_eq!(v["rings"][0]["fill"], 1);
    // The message waits in ring 0 for a consumer: the ring holds its slot.
    assert_eq!(v["classes"][0]["extents"][0]["in_flight"], 1);
    assert_eq!(v["classes"][0]["extents"][0]["free"], 15);
    drop(tx);
    drop(seg);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn create_with_unknown_node_fails_with_the_path_and_no_file() {
    let p = path("badnode");
    let out = numashm().arg("create").arg(&p).args(["--size", "1M", "--classes", "1k:16", "--node", "200"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node 200") && err.contains("create"), "{err}");
    assert!(!p.exists());
}

#[test]
fn topology_json_lists_nodes_and_limits() {
    let out = numashm().args(["topology", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["nodes"].as_array().unwrap().is_empty());
    assert!(v["nodes"][0]["distances"].is_array());
    assert!(v["rlimit_memlock"].is_object());
}

#[test]
fn demo_runs_and_the_guest_sees_growth() {
    let out = numashm().arg("demo").timeout(std::time::Duration::from_secs(120)).output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("noticed growth to 32 MiB"), "{text}");
    assert!(text.contains("noticed growth to 64 MiB"), "{text}");
    assert!(text.contains("verified on node"), "{text}");
}
