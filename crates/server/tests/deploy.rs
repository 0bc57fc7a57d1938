//! The Kubernetes manifests (`deploy/kubernetes`: the kustomize base, the `s3` overlay and
//! the `s3-followers` overlay's read replicas)
//! rendered with the real `kubectl kustomize` and validated with `kubernetes-validate` against
//! the Kubernetes schemas; held to what the server really has (ports, probe endpoints, the
//! shutdown budget, the replication config it accepts); and the upgrade from the Go
//! sqlite-rest's Helm chart run end to end: a Litestream 0.3 backup written by the real
//! Litestream 0.3.13 where the Go chart's sidecar kept it (bucket path `db.sqlite3`, database
//! `/data/db.sqlite3`) is restored by the manifests' init containers, migrated, served with
//! the manifests' own flags (pflag style, `--flag=true`), environment and replication
//! config, and the server's replica is then restored by the real Litestream 0.5.17; and the
//! Go chart's own command lines run our binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use std::time::Duration;

use common::replica::Running;
use serde_json::{Value, json};
use testkit::litestream::Litestream;
use testkit::litestream_v03::{LitestreamV03, V03Replica};
use testkit::{Tool, require_tool};

const BIN: &str = env!("CARGO_BIN_EXE_sqlite-rest");
const OVERLAYS: [&str; 3] = ["base", "overlays/s3", "overlays/s3-followers"];

fn kubectl(test: &str) -> Option<PathBuf> {
    require_tool(Tool::Kubectl, test)
}

/// `kubectl kustomize deploy/kubernetes/<dir>`: the rendered YAML.
fn render(kubectl: &Path, dir: &str) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(
            testkit::workspace_root()
                .join("deploy/kubernetes")
                .join(dir),
        )
        .output()
        .unwrap();
    testkit::assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "kubectl kustomize {dir} warned: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every object of a rendered multi-document YAML.
fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| {
            let v = serde_yaml_ng::Value::deserialize(doc).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}* rendered"))
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

/// The server container's probes: liveness and start-up on `/live`, readiness on `/ready`,
/// all on the metrics port.
fn assert_probes(server: &Value, what: &str) {
    for (probe, path) in [
        ("livenessProbe", "/live"),
        ("readinessProbe", "/ready"),
        ("startupProbe", "/live"),
    ] {
        assert_eq!(server[probe]["httpGet"]["path"], path, "{what} {probe}");
        assert_eq!(
            server[probe]["httpGet"]["port"], "metrics",
            "{what} {probe}"
        );
    }
}

/// A container's `args`.
fn args_of(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// The schema versions to validate against (`scripts/lib/tools.sh` pins them).
fn schema_versions() -> Vec<String> {
    std::env::var("KUBERNETES_SCHEMA_VERSIONS")
        .unwrap_or_else(|_| "1.30.0 1.37.0".to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn validate(validator: &Path, file: &Path, version: &str) -> std::process::Output {
    Command::new(validator)
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn the_manifests_render_and_validate_against_the_kubernetes_schemas() {
    const TEST: &str = "the_manifests_render_and_validate_against_the_kubernetes_schemas";
    let Some(kubectl) = kubectl(TEST) else { return };
    let Some(validator) = require_tool(Tool::KubernetesValidate, TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for overlay in OVERLAYS {
        let yaml = render(&kubectl, overlay);
        let kinds: Vec<Value> = objects(&yaml).iter().map(|o| o["kind"].clone()).collect();
        for kind in ["StatefulSet", "Service", "ConfigMap", "ServiceAccount"] {
            assert!(
                kinds.contains(&json!(kind)),
                "{overlay}: no {kind} in {kinds:?}"
            );
        }
        let file = dir
            .path()
            .join(format!("{}.yaml", overlay.replace('/', "-")));
        std::fs::write(&file, &yaml).unwrap();
        // The same objects with one misspelt field: the validator must refuse them, or its
        // success above proves nothing.
        let broken = dir.path().join("broken.yaml");
        std::fs::write(
            &broken,
            yaml.replacen("readinessProbe:", "readinesProbe:", 1),
        )
        .unwrap();
        for version in schema_versions() {
            let out = validate(&validator, &file, &version);
            testkit::assert_success(&out);
            let out = validate(&validator, &broken, &version);
            assert!(
                !out.status.success(),
                "kubernetes-validate {version} accepted a misspelt field: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// The rendered manifests agree with the server: its ports and probe endpoints, a shutdown
/// budget covering the drain and the final sync, the init containers in the order that
/// restores before migrating, credentials under the standard AWS names, a replication
/// config it accepts.
#[test]
fn the_manifests_agree_with_the_server() {
    let Some(kubectl) = kubectl("the_manifests_agree_with_the_server") else {
        return;
    };
    for overlay in OVERLAYS {
        let objects = objects(&render(&kubectl, overlay));
        let sts = find(&objects, "StatefulSet", "sqlite-rest");
        assert_eq!(sts["spec"]["replicas"], 1, "{overlay}: one writer");
        let template = &sts["spec"]["template"];
        let pod = &template["spec"];
        let server = container(pod, "containers", "server");
        let args = args_of(server);
        assert_eq!(args[0], "serve");
        let port = |name: &str| {
            server["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{overlay}: no port {name}"))["containerPort"]
                .as_u64()
                .unwrap()
        };
        let (http, metrics) = (port("http"), port("metrics"));
        assert!(
            args.contains(&format!("--http-addr=:{http}").as_str()),
            "{args:?}"
        );
        assert!(
            args.contains(&format!("--metrics-addr=:{metrics}").as_str()),
            "{args:?}"
        );
        assert!(args.contains(&"--replication-enabled=true"), "{args:?}");
        assert_eq!(
            template["metadata"]["annotations"]["prometheus.io/port"],
            metrics.to_string()
        );
        assert_eq!(
            template["metadata"]["annotations"]["prometheus.io/path"],
            "/metrics"
        );
        assert_probes(server, overlay);
        let inits: Vec<&str> = pod["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            inits,
            ["restore", "migrate"],
            "{overlay}: restore before migrating"
        );

        // SIGTERM to SIGKILL covers the drain, the final sync and the runtime's last wait.
        let config = find(&objects, "ConfigMap", "sqlite-rest-litestream");
        let config = replication::Config::parse(
            config["data"]["litestream.yml"].as_str().unwrap(),
            replication::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{overlay}: the server refuses the config: {e}"));
        config.ensure_supported().unwrap();
        let needed = sqlite_rest::entry::SERVE_DRAIN
            + config.shutdown_sync_timeout
            + sqlite_rest::entry::RUNTIME_SHUTDOWN_GRACE;
        let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
        assert!(
            grace > needed,
            "{overlay}: {grace:?} of grace, shutdown may take {needed:?}"
        );

        if overlay.starts_with("overlays/s3") {
            for c in [container(pod, "initContainers", "restore"), server] {
                for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                    let env = c["env"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|e| e["name"] == key)
                        .unwrap_or_else(|| panic!("{}: no {key}", c["name"]));
                    assert_eq!(env["valueFrom"]["secretKeyRef"]["key"], key);
                }
                let mounts = c["volumeMounts"].to_string();
                assert!(!mounts.contains("replica"), "{mounts}");
            }
            assert_eq!(
                sts["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
        }
    }
}

// ---- the upgrade from the Go chart -----------------------------------------------------

/// A pod of the rendered StatefulSet, run as local processes: every volume is a directory of
/// `root`, every container's args and environment are the manifests' own, with only the mount
/// paths moved under `root` and the listen addresses on 127.0.0.1.
struct Pod {
    root: PathBuf,
    spec: Value,
    /// ConfigMaps and Secrets by name (the rendered ones, plus what the user creates).
    config_maps: ByName,
    secrets: ByName,
}

impl Pod {
    /// Where the volume `name` lives on this machine.
    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// Lays out the volumes: ConfigMap and Secret volumes get their keys as files;
    /// claims and emptyDirs are directories.
    fn lay_out(&self) {
        for list in ["initContainers", "containers"] {
            for c in self.spec[list].as_array().into_iter().flatten() {
                for m in c["volumeMounts"].as_array().unwrap() {
                    std::fs::create_dir_all(self.volume_dir(m["name"].as_str().unwrap())).unwrap();
                }
            }
        }
        for v in self.spec["volumes"].as_array().unwrap() {
            let dir = self.volume_dir(v["name"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            // A missing ConfigMap may be optional; a missing Secret keeps the pod waiting.
            let secret = v["secret"]["secretName"].as_str().map(|name| {
                self.secrets
                    .get(name)
                    .unwrap_or_else(|| panic!("no Secret {name}"))
            });
            let source = v["configMap"]["name"]
                .as_str()
                .and_then(|name| self.config_maps.get(name))
                .or(secret);
            for (key, value) in source.into_iter().flatten() {
                std::fs::write(dir.join(key), value).unwrap();
            }
        }
    }

    /// `text` (a path, or `--flag=path`) with a path inside the pod moved to where its volume
    /// is on this machine, for container `c`; anything else unchanged.
    fn local(&self, c: &Value, text: &str) -> String {
        let (flag, value) = match text.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (format!("{flag}="), value),
            _ => (String::new(), text),
        };
        let mut mounts: Vec<&Value> = c["volumeMounts"].as_array().unwrap().iter().collect();
        // Longest mount path first: /data/x before /data.
        mounts.sort_by_key(|m| std::cmp::Reverse(m["mountPath"].as_str().unwrap().len()));
        for m in mounts {
            let path = m["mountPath"].as_str().unwrap();
            let Some(rest) = value.strip_prefix(path) else {
                continue;
            };
            if !rest.is_empty() && !rest.starts_with('/') {
                continue;
            }
            let mut local = self.volume_dir(m["name"].as_str().unwrap());
            if let Some(sub) = m["subPath"].as_str() {
                local = local.join(sub);
            }
            return format!("{flag}{}{rest}", local.display());
        }
        text.to_string()
    }

    /// The container's environment: `envFrom` ConfigMaps, then `env` (values and references).
    fn env(&self, c: &Value) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let name = from["configMapRef"]["name"].as_str().unwrap();
            for (k, v) in &self.config_maps[name] {
                env.push((k.clone(), v.clone()));
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let value = if let Some(v) = e["value"].as_str() {
                v.to_string()
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                let secret = &self.secrets[r["name"].as_str().unwrap()];
                secret[r["key"].as_str().unwrap()].clone()
            };
            env.push((e["name"].as_str().unwrap().to_string(), value));
        }
        env
    }

    /// The container `name` of `list` as a command of the `sqlite-rest` binary (the image's
    /// entrypoint), its stderr appended to `<root>/<name>.log`; `addr(flag)` gives the local
    /// address for a listen address flag (`--http-addr`, `--metrics-addr`).
    fn command(&self, list: &str, name: &str, addr: impl Fn(&str) -> String) -> Command {
        let c = container(&self.spec, list, name);
        assert!(
            c["command"].is_null(),
            "{name}: the image's entrypoint runs"
        );
        let mut cmd = Command::new(BIN);
        cmd.env_clear();
        for (k, v) in self.env(c) {
            cmd.env(k, self.local(c, &v));
        }
        for arg in c["args"].as_array().unwrap() {
            let arg = self.local(c, arg.as_str().unwrap());
            let arg = match arg.split_once('=') {
                Some((flag @ ("--http-addr" | "--metrics-addr"), _)) => {
                    format!("{flag}={}", addr(flag))
                }
                _ => arg,
            };
            cmd.arg(arg);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{name}.log")))
            .unwrap();
        cmd.stdout(Stdio::null()).stderr(Stdio::from(log));
        cmd
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Runs the init containers in order; each must succeed.
    fn init(&self) {
        for c in self.spec["initContainers"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap();
            let status = self
                .command("initContainers", name, |flag| {
                    panic!("{name} listens ({flag})")
                })
                .status()
                .unwrap();
            assert!(
                status.success(),
                "init container {name}: {status}\n{}",
                self.log(name)
            );
        }
    }

    /// Starts the server container; returns it once `/ready` answers (killed when dropped).
    async fn serve(&self) -> Running {
        let server = Running::spawn(|p, a| {
            self.command("containers", "server", move |flag| {
                let port = if flag == "--http-addr" { p } else { a };
                format!("127.0.0.1:{port}")
            })
        })
        .await;
        // Liveness too, where the manifests probe it.
        let live = reqwest::get(format!("{}/live", server.admin))
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
        server
    }

    /// SIGTERM, and a clean exit within the pod's termination grace period.
    async fn stop(&self, mut server: Running) {
        server.sigterm();
        let grace = self.spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        let status = server.wait_exit(Duration::from_secs(grace)).await;
        assert!(status.success(), "server: {status}\n{}", self.log("server"));
    }
}

/// ConfigMaps or Secrets: name → key → value.
type ByName = BTreeMap<String, BTreeMap<String, String>>;

/// The ConfigMaps and Secrets of rendered manifests as a user completes them for the local S3
/// server: the bucket and its endpoint in the replication config, the database's path under
/// `data` (where the pod's data volume is on this machine), the tables to expose, and the
/// Secrets the overlay expects.
fn user_objects(
    objects: &[Value],
    s3: &testkit::S3,
    bucket: &str,
    data: &Path,
    tables: &str,
) -> (ByName, ByName) {
    let mut config_maps = BTreeMap::new();
    for cm in objects.iter().filter(|o| o["kind"] == "ConfigMap") {
        let entries: BTreeMap<String, String> = serde_json::from_value(cm["data"].clone()).unwrap();
        config_maps.insert(
            cm["metadata"]["name"].as_str().unwrap().to_string(),
            entries,
        );
    }
    let litestream_cm = find(objects, "ConfigMap", "sqlite-rest-litestream")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let yml = &config_maps[&litestream_cm]["litestream.yml"];
    assert!(
        yml.contains("bucket: my-bucket") && yml.contains("path: db.sqlite3"),
        "{yml}"
    );
    let yml = yml
        .replace("bucket: my-bucket", &format!("bucket: {bucket}"))
        .replace(
            "# endpoint: https://minio.example.com",
            &format!("endpoint: {}", s3.endpoint),
        )
        .replace("# force-path-style: true", "force-path-style: true")
        // The database's path in the pod, on this machine (as the containers' mounts are).
        .replace("path: /data/", &format!("path: {}/", data.display()));
    assert!(
        yml.contains(&s3.endpoint),
        "the overlay's endpoint lines moved:\n{yml}"
    );
    config_maps
        .get_mut(&litestream_cm)
        .unwrap()
        .insert("litestream.yml".into(), yml);
    let env_cm = find(objects, "ConfigMap", "sqlite-rest-env")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    config_maps
        .get_mut(&env_cm)
        .unwrap()
        .insert("SQLITEREST_SECURITY_ALLOW_TABLE".into(), tables.into());
    let secrets = BTreeMap::from([
        (
            "sqlite-rest-auth".to_string(),
            BTreeMap::from([(
                "token".to_string(),
                String::from_utf8(common::SECRET.to_vec()).unwrap(),
            )]),
        ),
        (
            "sqlite-rest-s3".to_string(),
            BTreeMap::from([
                ("AWS_ACCESS_KEY_ID".to_string(), s3.access_key_id.clone()),
                (
                    "AWS_SECRET_ACCESS_KEY".to_string(),
                    s3.secret_access_key.clone(),
                ),
            ]),
        ),
    ]);
    (config_maps, secrets)
}

/// Rows of every table the test reads, as JSON, ordered.
fn table(db: &Path, sql: &str) -> Vec<Value> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut stmt = c.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        Ok(Value::Array(
            (0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Integer(v) => json!(v),
                    rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    other => panic!("unexpected {other:?}"),
                })
                .collect(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

const ROWS_SQL: &str = "SELECT id, phase FROM t ORDER BY id";
/// The Go version's migration 1.
const MIGRATION_1: &str = "CREATE TABLE upgrade_notes(id INTEGER PRIMARY KEY, note TEXT NOT NULL);\n\
     INSERT INTO upgrade_notes(note) VALUES ('migrated by the Go version');";
/// What the Go sqlite-rest's `migrate` (golang-migrate's sqlite3 driver, with the Go
/// version's table name) leaves after migration 1.
const GO_MIGRATED: &str = "CREATE TABLE upgrade_notes(id INTEGER PRIMARY KEY, note TEXT NOT NULL);\n\
     INSERT INTO upgrade_notes(note) VALUES ('migrated by the Go version');\n\
     CREATE TABLE __sqlite_rest_migrations (version uint64,dirty bool);\n\
     CREATE UNIQUE INDEX version_unique ON __sqlite_rest_migrations (version);\n\
     INSERT INTO __sqlite_rest_migrations (version, dirty) VALUES (1, 0);";
const NOTES_SQL: &str = "SELECT id, note FROM upgrade_notes ORDER BY id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_chart_upgrades_to_the_manifests() {
    const TEST: &str = "the_go_chart_upgrades_to_the_manifests";
    let Some(kubectl) = kubectl(TEST) else { return };
    let Some(v03) = LitestreamV03::require(TEST) else {
        return;
    };
    let Some(ls) = Litestream::require(TEST) else {
        return;
    };
    let Some(s3) = testkit::require_s3(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // The Go chart's sidecar: Litestream 0.3 replicating the database to s3://BUCKET/db.sqlite3
    // (the chart mounts the user's litestream.yml; the path is the user's choice, and this is
    // the one the s3 overlay's config names, so the user keeps it).
    let bucket = s3.create_bucket("go-chart");
    let old = V03Replica::S3 {
        s3: s3.clone(),
        bucket: bucket.clone(),
        path: "db.sqlite3".to_string(),
    };
    // The Go version's migrations had run: its init container applied migration 1
    // (golang-migrate's table, as the Go sqlite-rest names it).
    let backup = v03.write_backup_with(dir.path(), &old, 2, GO_MIGRATED);

    // Our manifests, as `kubectl apply -k deploy/kubernetes/overlays/s3` would create them,
    // with what the user edits: the bucket (and, for this S3-compatible server, its endpoint),
    // the tables to expose, and the Secrets the overlay expects.
    let objects = objects(&render(&kubectl, "overlays/s3"));
    let (mut config_maps, secrets) = user_objects(
        &objects,
        &s3,
        &bucket,
        &dir.path().join("pod/volumes/data"),
        "t,upgrade_notes",
    );
    // The Go chart's migrations ConfigMap keeps its name and its migrations: 1, which the Go
    // version applied (run again, it would fail), and 2, new with the upgrade.
    let migrations = BTreeMap::from([
        (
            "1_upgrade_notes.up.sql".to_string(),
            MIGRATION_1.to_string(),
        ),
        (
            "2_first_start.up.sql".to_string(),
            "INSERT INTO upgrade_notes(note) VALUES ('migrated on the first start');".to_string(),
        ),
    ]);
    config_maps.insert("sqlite-rest-migrations".into(), migrations);
    let mut pod = Pod {
        root: dir.path().join("pod"),
        spec: find(&objects, "StatefulSet", "sqlite-rest")["spec"]["template"]["spec"].clone(),
        config_maps,
        secrets,
    };
    pod.lay_out();
    let db = pod.volume_dir("data").join("db.sqlite3");

    // First start on a new volume: the restore init container restores the 0.3 backup, the
    // migration runs on it, and the server serves the Go version's rows and the migration's.
    pod.init();
    assert!(
        pod.log("restore")
            .contains("from the Litestream 0.3 backup"),
        "{}",
        pod.log("restore")
    );
    assert_eq!(table(&db, ROWS_SQL), table(&backup.oracle, ROWS_SQL));
    let server = pod.serve().await;
    let token = common::hs_token(
        common::SECRET,
        jsonwebtoken::Algorithm::HS256,
        json!({"role": "test"}),
    );
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", server.base))
            .bearer_auth(&token)
            .send()
    };
    let served: Value = get("/t?select=id,phase&order=id")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected: Vec<Value> = table(&backup.oracle, ROWS_SQL)
        .into_iter()
        .map(|r| json!({"id": r[0], "phase": r[1]}))
        .collect();
    assert_eq!(served, Value::Array(expected), "the Go version's rows");
    let notes: Value = get("/upgrade_notes?order=id")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        notes,
        json!([
            {"id": 1, "note": "migrated by the Go version"},
            {"id": 2, "note": "migrated on the first start"}
        ])
    );
    let r = client
        .post(format!("{}/t", server.base))
        .bearer_auth(&token)
        .json(&json!({"phase": 500, "payload": "written after the upgrade"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    pod.stop(server).await;

    // The replica now holds our LTX files beside the 0.3 backup: the real Litestream 0.5.17
    // restores the database as the server left it.
    let url = old.url();
    let restored = dir.path().join("litestream-0.5.db");
    testkit::assert_success(&ls.restore(&url, &restored, &["-integrity-check", "full"]));
    assert_eq!(table(&restored, ROWS_SQL), table(&db, ROWS_SQL));
    assert_eq!(table(&restored, NOTES_SQL), table(&db, NOTES_SQL));
    assert_eq!(table(&db, ROWS_SQL).len() as i64, backup.rows + 1);

    // The next rollout brings a migration: the pod restarts on its volume (restore does
    // nothing), the migration runs while no server replicates, and the server's replica
    // must still get it.
    pod.config_maps
        .get_mut("sqlite-rest-migrations")
        .unwrap()
        .insert(
            "3_more_notes.up.sql".to_string(),
            "INSERT INTO upgrade_notes(note) VALUES ('migrated on a later rollout');".to_string(),
        );
    pod.lay_out();
    pod.init();
    let server = pod.serve().await;
    pod.stop(server).await;
    let restored = dir.path().join("litestream-0.5-after-rollout.db");
    testkit::assert_success(&ls.restore(&url, &restored, &["-integrity-check", "full"]));
    assert_eq!(
        table(&restored, NOTES_SQL),
        vec![
            json!([1, "migrated by the Go version"]),
            json!([2, "migrated on the first start"]),
            json!([3, "migrated on a later rollout"])
        ]
    );
    assert_eq!(table(&restored, ROWS_SQL), table(&db, ROWS_SQL));
}

/// The Go chart's own command lines (`charts/sqlite-rest` of the Go sqlite-rest, rendered with
/// its default values plus a token Secret and a table): its migrations init container and its
/// server container run our binary unchanged, paths and listen addresses aside. The chart
/// passes `--metrics-server=:8081`, a flag the Go binary never had (it is `--metrics-addr`);
/// ours takes it as an alias, so the Go chart can run this image while users move to the
/// manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_charts_command_lines_run_our_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("1_t.up.sql"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('go chart');",
    )
    .unwrap();
    let token = dir.path().join("auth-token");
    std::fs::write(&token, common::SECRET).unwrap();
    let db = format!("--db-dsn={}", data.join("db.sqlite3").display());

    // command: [sqlite-rest, migrate]; args as the chart's migrations container has them.
    let out = Command::new(BIN)
        .arg("migrate")
        .arg(&migrations)
        .args([db.as_str(), "--log-level=5", "--log-devel=true"])
        .output()
        .unwrap();
    testkit::assert_success(&out);

    // command: [sqlite-rest, serve]; the chart sets no --http-addr (the default :8080): here
    // a local port instead, and the metrics address on 127.0.0.1.
    let log = dir.path().join("serve.log");
    let mut server = Running::spawn(|p, a| {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", db.as_str(), "--security-allow-table=t"])
            .args(["--log-level=5", "--log-devel=true"])
            .arg(format!("--metrics-server=127.0.0.1:{a}"))
            .arg(format!("--auth-token-file={}", token.display()))
            .arg(format!("--http-addr=127.0.0.1:{p}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        cmd
    })
    .await;
    let jwt = common::hs_token(
        common::SECRET,
        jsonwebtoken::Algorithm::HS256,
        json!({"role": "test"}),
    );
    let rows: Value = reqwest::Client::new()
        .get(format!("{}/t?select=v", server.base))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows, json!([{"v": "go chart"}]));
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(60)).await.success());
}

/// Whether every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The followers overlay (`overlays/s3-followers`): the primary StatefulSet of the s3
/// overlay plus a Deployment of followers (`serve --replication-follow`, the same replication
/// config, readiness on `/ready`) and a read Service in front of both; the primary's Service
/// and selector never take in a follower. Then both pods run as local processes against the
/// local S3 server with the manifests' own arguments: a row written through the primary is
/// served by the follower, and a write sent to the follower is refused naming the primary's
/// Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_followers_overlay_serves_reads_from_followers() {
    const TEST: &str = "the_followers_overlay_serves_reads_from_followers";
    let Some(kubectl) = kubectl(TEST) else { return };
    let objects = objects(&render(&kubectl, "overlays/s3-followers"));
    let sts = find(&objects, "StatefulSet", "sqlite-rest");
    let deployment = find(&objects, "Deployment", "sqlite-rest-follower");
    let primary_labels = &sts["spec"]["template"]["metadata"]["labels"];
    let follower_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let sts_selector = &sts["spec"]["selector"]["matchLabels"];
    let deployment_selector = &deployment["spec"]["selector"]["matchLabels"];
    assert!(selects(sts_selector, primary_labels));
    assert!(selects(deployment_selector, follower_labels));
    assert!(
        !selects(sts_selector, follower_labels) && !selects(deployment_selector, primary_labels),
        "the StatefulSet's and the Deployment's selectors overlap"
    );
    let service = |name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == "Service" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Service {name}"))
    };
    let primary_service = &service("sqlite-rest")["spec"]["selector"];
    assert!(selects(primary_service, primary_labels));
    assert!(
        !selects(primary_service, follower_labels),
        "writes to the sqlite-rest Service could reach a follower"
    );
    let read = &service("sqlite-rest-read")["spec"];
    assert!(selects(&read["selector"], primary_labels));
    assert!(selects(&read["selector"], follower_labels));
    assert_eq!(read["ports"][0]["targetPort"], "http");

    let pod = &deployment["spec"]["template"]["spec"];
    let server = container(pod, "containers", "server");
    let args = args_of(server);
    assert_eq!(args[0], "serve");
    assert!(args.contains(&"--replication-follow=true"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--replication-enabled")),
        "{args:?}"
    );
    let primary_args =
        container(&sts["spec"]["template"]["spec"], "containers", "server")["args"].to_string();
    for a in &args {
        if a.starts_with("--replication-config=") || a.starts_with("--db-dsn=") {
            assert!(primary_args.contains(a), "{a} differs from the primary's");
        }
    }
    assert!(
        args.contains(&"--replication-primary-url=http://sqlite-rest:8080"),
        "{args:?}"
    );
    assert_probes(server, "s3-followers");
    let config_volume = |spec: &Value| {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "config")
            .unwrap()["configMap"]["name"]
            .clone()
    };
    assert_eq!(
        config_volume(pod),
        config_volume(&sts["spec"]["template"]["spec"]),
        "the same replication config"
    );

    // Both pods, run as local processes on the local S3 server.
    let Some(s3) = testkit::require_s3(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = s3.create_bucket("followers");
    let pod_of = |name: &str, spec: &Value| {
        let root = dir.path().join(name);
        let (mut config_maps, secrets) =
            user_objects(&objects, &s3, &bucket, &root.join("volumes/data"), "t");
        config_maps.insert(
            "sqlite-rest-migrations".into(),
            BTreeMap::from([(
                "1_t.up.sql".to_string(),
                "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);".to_string(),
            )]),
        );
        let pod = Pod {
            root,
            spec: spec.clone(),
            config_maps,
            secrets,
        };
        pod.lay_out();
        pod
    };
    let primary_pod = pod_of("primary", &sts["spec"]["template"]["spec"]);
    primary_pod.init();
    let primary = primary_pod.serve().await;
    let token = common::hs_token(
        common::SECRET,
        jsonwebtoken::Algorithm::HS256,
        json!({"role": "test"}),
    );
    let client = reqwest::Client::new();
    let write = |server: &Running, v: &str| {
        client
            .post(format!("{}/t", server.base))
            .bearer_auth(&token)
            .header("Prefer", "durability=replicated")
            .json(&json!({ "v": v }))
            .send()
    };
    let r = write(&primary, "first").await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let follower_pod = pod_of("follower", pod);
    let follower = follower_pod.serve().await;
    let r = write(&follower, "refused").await.unwrap();
    assert_eq!(r.status(), 405);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("http://sqlite-rest:8080"),
        "{e}"
    );
    let r = write(&primary, "second").await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows: Value = client
            .get(format!("{}/t?select=v&order=id", follower.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if rows == json!([{"v": "first"}, {"v": "second"}]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower serves {rows}\n{}",
            follower_pod.log("server")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = reqwest::get(format!("{}/ready", follower.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    follower_pod.stop(follower).await;
    primary_pod.stop(primary).await;
}
