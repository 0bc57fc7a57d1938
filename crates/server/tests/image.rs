//! The container image (`Containerfile`, built by `scripts/image` from the release binary),
//! smoke-tested without a container runtime: the image is built with podman, a container is
//! created from it and its root filesystem mounted (`podman mount`), and the image's own
//! binary runs in it with `chroot`, as the image's user (10001), with the image's
//! environment only: `--version`, `migrate`, `serve` on a fresh database replicating to a
//! file replica (a row written over HTTP, then SIGTERM), `restore` of that replica into a
//! fresh data directory, and `serve` of the restored database, which serves the row; all on
//! a read-only root with writable volumes, as the Kubernetes manifests run it. The image's
//! metadata (user, volume, ports, entrypoint) is checked too. Needs root (podman rootful,
//! chroot, mounts in a private mount namespace).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::replica::Running;
use serde_json::{Value, json};
use testkit::{Tool, require_tool};

const TEST: &str = "image_smoke_test";
/// The unprivileged user the image runs as (`Containerfile`).
const IMAGE_USER: &str = "10001:10001";
/// The writable directories under a read-only root: the image's /data volume, /tmp (an
/// emptyDir in the manifests), a file replica and a second data directory for the restore.
const VOLUMES: [&str; 4] = ["/data", "/tmp", "/replica", "/restored"];

/// Removes what the test made in podman's storage, even when it fails.
struct Podman {
    bin: PathBuf,
    image: String,
    container: Option<String>,
}

impl Podman {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin).args(args).output().unwrap()
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        testkit::assert_success(&out);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            let _ = self.run(&["umount", &c]);
            let _ = self.run(&["rm", "--force", &c]);
        }
        let _ = self.run(&["rmi", "--force", &self.image]);
    }
}

/// A command running the image's `sqlite-rest` in the mounted root `root` with `chroot`, as
/// the image's user, with the image's environment (`env` from `podman image inspect`) and
/// nothing else, as the Kubernetes manifests run it: the root file system read-only, the
/// directories of [`VOLUMES`] writable (volumes), and the kernel file systems a container
/// runtime mounts. The mounts live in a private mount namespace, gone with the process,
/// which keeps its pid through every `exec`, so signals sent to the child reach the server.
fn in_image(unshare: &Path, root: &Path, env: &[String], args: &[&str]) -> Command {
    let mut cmd = Command::new(unshare);
    cmd.env("VOLUMES", VOLUMES.join(" "));
    cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(
            "set -e; root=$1; shift; mount --bind \"$root\" \"$root\"; \
             for v in $VOLUMES; do mount --bind \"$root$v\" \"$root$v\"; done; \
             mount -o remount,bind,ro \"$root\"; \
             mount --bind /proc \"$root/proc\"; mount --bind /dev \"$root/dev\"; \
             exec /usr/bin/env -i \"$@\"",
        )
        .arg("sh")
        .arg(root)
        .args(env)
        .args(["/usr/sbin/chroot", &format!("--userspec={IMAGE_USER}")])
        .arg(root)
        .arg("sqlite-rest")
        .args(args);
    cmd
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_smoke_test() {
    let Some(podman) = require_tool(Tool::Podman, TEST) else {
        return;
    };
    let Some(release) = require_tool(Tool::ReleaseBinary, TEST) else {
        return;
    };
    let Some(unshare) = require_tool(Tool::Unshare, TEST) else {
        return;
    };
    if !is_root() {
        assert!(
            !testkit::tools_required(),
            "{TEST} needs root (rootful podman, chroot)"
        );
        eprintln!("SKIPPED {TEST}: needs root");
        return;
    }

    // Build the image from the release binary with the script users run.
    let image = format!(
        "localhost/{}:test",
        testkit::unique_name("sqlite-rest-image")
    );
    let mut podman = Podman {
        bin: podman,
        image: image.clone(),
        container: None,
    };
    let built = Command::new(testkit::workspace_root().join("scripts/image"))
        .arg("--binary")
        .arg(&release)
        .args(["--tag", &image])
        .output()
        .unwrap();
    testkit::assert_success(&built);
    eprintln!("{}", String::from_utf8_lossy(&built.stdout).trim());

    // What a runtime reads from the image.
    let config: Value = serde_json::from_str(&podman.run_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &image,
    ]))
    .unwrap();
    assert_eq!(config["User"], IMAGE_USER, "{config}");
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    for port in ["8080/tcp", "8081/tcp"] {
        assert!(config["ExposedPorts"].get(port).is_some(), "{config}");
    }
    assert_eq!(
        config["Entrypoint"],
        json!(["/usr/local/bin/sqlite-rest"]),
        "{config}"
    );
    let env: Vec<String> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();

    let container = podman.run_ok(&["create", &image]);
    podman.container = Some(container.clone());
    let root = PathBuf::from(podman.run_ok(&["mount", &container]));
    let run = |args: &[&str]| in_image(&unshare, &root, &env, args);
    let host = |p: &str| root.join(p.trim_start_matches('/'));
    for dir in ["/replica", "/restored"] {
        std::fs::create_dir_all(host(dir)).unwrap();
        let out = Command::new("chown")
            .arg(IMAGE_USER)
            .arg(host(dir))
            .output()
            .unwrap();
        testkit::assert_success(&out);
    }

    // --version: the binary starts with only what the image holds.
    let out = run(&["--version"]).output().unwrap();
    testkit::assert_success(&out);
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with("sqlite-rest ") && version.contains("(commit "),
        "{version}"
    );

    // The volume belongs to the image's user: migrate creates the database in it.
    std::fs::create_dir_all(host("/data/migrations")).unwrap();
    std::fs::write(
        host("/data/migrations/1_items.up.sql"),
        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    )
    .unwrap();
    std::fs::write(
        host("/data/migrations/1_items.down.sql"),
        "DROP TABLE items;",
    )
    .unwrap();
    let out = run(&["migrate", "--db-dsn=/data/app.db", "/data/migrations"])
        .output()
        .unwrap();
    testkit::assert_success(&out);

    // serve with a file replica (another directory the user owns), the JWT secret in a file.
    std::fs::write(host("/data/secret"), common::SECRET).unwrap();
    std::fs::write(
        host("/data/litestream.yml"),
        "dbs:\n  - path: /data/app.db\n    replica:\n      type: file\n      path: /replica\n",
    )
    .unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let serve = |db: &str, replicate: bool, port: u16, admin: u16| {
        let http = format!("--http-addr=127.0.0.1:{port}");
        let metrics = format!("--metrics-addr=127.0.0.1:{admin}");
        let dsn = format!("--db-dsn={db}");
        let mut args = vec![
            "serve",
            dsn.as_str(),
            http.as_str(),
            metrics.as_str(),
            "--auth-token-file=/data/secret",
            "--security-allow-table=items",
            "--log-level=info",
        ];
        if replicate {
            args.extend([
                "--replication-enabled=true",
                "--replication-config=/data/litestream.yml",
            ]);
        }
        let mut cmd = run(&args);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()));
        cmd
    };
    let token = common::hs_token(
        common::SECRET,
        jsonwebtoken::Algorithm::HS256,
        json!({"role": "test"}),
    );
    let client = reqwest::Client::new();
    let mut server = Running::spawn(|p, a| serve("/data/app.db", true, p, a)).await;
    let r = client
        .post(format!("{}/items", server.base))
        .bearer_auth(&token)
        .json(&json!({"id": 1, "name": "from the image"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(60)).await;
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "serve in the image: {status}\n{logged}");

    // restore into a fresh data directory, then serve what was restored.
    let out = run(&["restore", "-o", "/restored/app.db", "file:///replica"])
        .output()
        .unwrap();
    testkit::assert_success(&out);
    let mut server = Running::spawn(|p, a| serve("/restored/app.db", false, p, a)).await;
    let r = client
        .get(format!("{}/items?select=id,name", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"id": 1, "name": "from the image"}])
    );
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(60)).await.success());
}
