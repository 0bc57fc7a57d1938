//! Replica URLs (`docs/replication.md#replica-urls`): file paths, S3 buckets/prefixes/endpoints, provider hosts,
//! query aliases, Azure accounts/containers/paths, and errors for unknown or malformed
//! parameters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use replication::internals::{ensure_endpoint_scheme, is_local_endpoint};
use replication::{AbsTarget, FileTarget, ReplicaKind, ReplicaTarget, S3Target};
use replication::{UrlError, parse_replica_url};

#[track_caller]
fn s3(url: &str) -> S3Target {
    match parse_replica_url(url) {
        Ok(ReplicaTarget::S3(t)) => t,
        other => panic!("{url}: {other:?}"),
    }
}

#[track_caller]
fn fails(url: &str) -> UrlError {
    match parse_replica_url(url) {
        Err(e) => e,
        Ok(t) => panic!("{url} parsed as {t:?}"),
    }
}

#[test]
fn file_urls() {
    assert_eq!(
        parse_replica_url("file:///data/replica").unwrap(),
        ReplicaTarget::File(FileTarget {
            path: PathBuf::from("/data/replica")
        })
    );
    assert_eq!(
        parse_replica_url("file:///data/x/../replica/").unwrap(),
        ReplicaTarget::File(FileTarget {
            path: PathBuf::from("/data/replica")
        })
    );
    assert_eq!(
        parse_replica_url("file:///data/my%20replica")
            .unwrap()
            .describe(),
        "file:///data/my replica"
    );
    assert!(matches!(
        fails("file://relative/path"),
        UrlError::FileNotAbsolute(_)
    ));
    let e = fails("file:///data/replica?sync=1");
    assert!(e.to_string().contains("sync"), "{e}");
}

#[test]
fn s3_with_endpoint_region_and_path_style() {
    let t = s3("s3://bkt/mydb?endpoint=127.0.0.1:5055&region=us-east-1");
    assert_eq!(t.bucket, "bkt");
    assert_eq!(t.path, "mydb");
    assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:5055"));
    assert_eq!(t.region.as_deref(), Some("us-east-1"));
    assert!(t.force_path_style, "an endpoint turns on path style");
    assert!(t.sign_payload && t.require_content_md5 && !t.skip_verify);

    let t = s3("s3://bkt/a/b/../c/?endpoint=s3.example.com&forcePathStyle=false");
    assert_eq!(t.path, "a/c");
    assert_eq!(t.endpoint.as_deref(), Some("https://s3.example.com"));
    assert!(!t.force_path_style);

    let t = s3(
        "s3://bkt/db?endpoint=https://minio.internal:9000&force-path-style=true&skip-verify=true",
    );
    assert_eq!(t.endpoint.as_deref(), Some("https://minio.internal:9000"));
    assert!(t.force_path_style && t.skip_verify);

    let t = s3("s3://bkt/db");
    assert_eq!(
        (t.endpoint, t.region, t.force_path_style),
        (None, None, false)
    );
}

#[test]
fn endpoint_scheme_defaults() {
    for local in [
        "localhost:9000",
        "127.0.0.1:5055",
        "10.1.2.3",
        "172.16.0.1:9000",
        "172.31.255.1",
        "192.168.1.5:9000",
        "nas.local:9000",
        "minio.localhost",
    ] {
        assert!(is_local_endpoint(local), "{local}");
        assert_eq!(ensure_endpoint_scheme(local), format!("http://{local}"));
    }
    for remote in [
        "s3.amazonaws.com",
        "172.32.0.1",
        "8.8.8.8:443",
        "example.com:9000",
        "10.example.com",
    ] {
        assert!(!is_local_endpoint(remote), "{remote}");
        assert_eq!(ensure_endpoint_scheme(remote), format!("https://{remote}"));
    }
    assert_eq!(ensure_endpoint_scheme("http://x.com"), "http://x.com");
}

#[test]
fn provider_hosts() {
    let t = s3("s3://mybucket.s3.us-west-2.amazonaws.com/db");
    assert_eq!(
        (
            t.bucket.as_str(),
            t.region.as_deref(),
            t.endpoint.as_deref()
        ),
        ("mybucket", Some("us-west-2"), None)
    );
    let t = s3("s3://mybucket.s3.amazonaws.com/db");
    assert_eq!((t.bucket.as_str(), t.region.as_deref()), ("mybucket", None));

    let t = s3("s3://mybucket.localhost:9000/db");
    assert_eq!(t.bucket, "mybucket");
    assert_eq!(t.endpoint.as_deref(), Some("http://localhost:9000"));
    assert_eq!(t.region.as_deref(), Some("us-east-1"));
    assert!(t.force_path_style);

    let t = s3("s3://bkt.nyc3.digitaloceanspaces.com/db");
    assert_eq!(
        (t.bucket.as_str(), t.region.as_deref()),
        ("bkt", Some("nyc3"))
    );
    assert_eq!(
        t.endpoint.as_deref(),
        Some("https://nyc3.digitaloceanspaces.com")
    );

    let t = s3("s3://bkt.s3.us-west-000.backblazeb2.com/db");
    assert_eq!(t.bucket, "bkt");
    assert_eq!(
        t.endpoint.as_deref(),
        Some("https://s3.us-west-000.backblazeb2.com")
    );
    assert!(t.force_path_style);

    let t = s3("s3://bkt.s3.filebase.com/db");
    assert_eq!(t.bucket, "bkt");
    assert_eq!(t.endpoint.as_deref(), Some("https://s3.filebase.com"));
    assert!(t.force_path_style, "Filebase needs path style");

    let t = s3("s3://bkt.s3.fr-par.scw.cloud/db");
    assert_eq!(
        (t.bucket.as_str(), t.region.as_deref()),
        ("bkt", Some("fr-par"))
    );
    assert_eq!(t.endpoint.as_deref(), Some("https://s3.fr-par.scw.cloud"));

    let t = s3("s3://bkt/db?endpoint=fly.storage.tigris.dev");
    assert!(!t.require_content_md5, "Tigris: no Content-MD5");
    let t = s3("s3://bkt/db?endpoint=acct.r2.cloudflarestorage.com");
    assert_eq!(t.concurrency, Some(2), "R2 default concurrency");
}

#[test]
fn access_point_arn() {
    let t = s3("s3://arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap/backups/db?concurrency=4");
    assert_eq!(
        t.bucket,
        "arn:aws:s3:us-west-2:123456789012:accesspoint/my-ap"
    );
    assert_eq!(t.path, "backups/db");
    assert_eq!(t.region.as_deref(), Some("us-west-2"));
    assert_eq!(t.concurrency, Some(4));
}

#[test]
fn query_aliases() {
    let t = s3(
        "s3://b/p?signPayload=false&requireContentMD5=false&storageClass=STANDARD_IA&partSize=10485760&concurrency=3&sseKmsKeyId=k1",
    );
    assert!(!t.sign_payload && !t.require_content_md5);
    assert_eq!(t.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(t.part_size, Some(10 << 20));
    assert_eq!(t.concurrency, Some(3));
    assert_eq!(t.sse_kms_key_id.as_deref(), Some("k1"));
    let t = s3(
        "s3://b/p?sign-payload=0&require-content-md5=no&storage-class=GLACIER_IR&part-size=6291456",
    );
    assert!(!t.sign_payload && !t.require_content_md5);
    assert_eq!(t.storage_class.as_deref(), Some("GLACIER_IR"));
    assert_eq!(t.part_size, Some(6 << 20));
    let t = s3("s3://b/p?sseCustomerKey=a2V5");
    assert_eq!(t.sse_customer_key.as_ref().unwrap().expose(), "a2V5");
    assert_eq!(t.sse_customer_algorithm.as_deref(), Some("AES256"));
}

#[test]
fn errors_name_the_problem() {
    let e = fails("s3://b/p?endpoint=x:1&regoin=us-east-1&foo=bar");
    match &e {
        UrlError::UnknownParameter { names, .. } => assert_eq!(names, "regoin, foo"),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("regoin"));
    assert!(
        matches!(fails("s3://b/p?forcePathStyle=sometimes"), UrlError::BadParameter { name, .. } if name == "forcePathStyle")
    );
    assert!(
        matches!(fails("s3://b/p?partSize=abc"), UrlError::BadParameter { name, .. } if name == "partSize")
    );
    assert!(matches!(
        fails("s3://b/p?concurrency=0"),
        UrlError::BadParameter { .. }
    ));
    assert!(matches!(
        fails("s3://b/p?partSize=1024"),
        UrlError::PartSizeTooSmall(1024)
    ));
    assert!(matches!(fails("s3://bucket"), UrlError::EmptyPrefix { .. }));
    assert!(matches!(
        fails("s3://bucket/"),
        UrlError::EmptyPrefix { .. }
    ));
    assert!(matches!(fails("s3:///prefix"), UrlError::MissingBucket));
    assert!(matches!(fails("/data/replica"), UrlError::NoScheme(_)));
    assert!(matches!(
        fails("ftp://host/x"),
        UrlError::UnknownScheme { .. }
    ));
    assert!(matches!(
        fails("s3://arn:aws:s3:us-east-1:1:bucket/x"),
        UrlError::Invalid { .. }
    ));
}

#[test]
fn other_backends_parse_as_unsupported() {
    for (url, kind) in [
        ("gs://bucket/db", ReplicaKind::Gs),
        ("sftp://u@host:22/db", ReplicaKind::Sftp),
        ("webdavs://host/db", ReplicaKind::Webdav),
        ("nats://host:4222/bucket", ReplicaKind::Nats),
        ("oss://bucket/db", ReplicaKind::Oss),
    ] {
        let t = parse_replica_url(url).unwrap();
        assert_eq!(t.kind(), kind, "{url}");
        let e = t.ensure_supported().unwrap_err().to_string();
        assert!(
            e.contains(kind.as_str()) && e.contains("not supported"),
            "{e}"
        );
    }
}

#[test]
fn abs_urls_name_account_container_and_path() {
    let abs = |url: &str| match parse_replica_url(url) {
        Ok(ReplicaTarget::Abs(t)) => t,
        other => panic!("{url}: {other:?}"),
    };
    assert_eq!(
        abs("abs://acct@container/dbs/./app/"),
        AbsTarget {
            account_name: Some("acct".into()),
            container: "container".into(),
            path: "dbs/app".into(),
            ..AbsTarget::default()
        }
    );
    let t = abs("abs://container");
    assert_eq!(
        (t.account_name, t.container, t.path),
        (None, "container".into(), "".into())
    );
    assert_eq!(
        parse_replica_url("abs://acct@c/db").unwrap().describe(),
        "abs://acct@c/db"
    );
    assert!(
        parse_replica_url("abs://acct@c/db")
            .unwrap()
            .ensure_supported()
            .is_ok()
    );
    assert!(matches!(fails("abs:///db"), UrlError::MissingContainer(_)));
    // Litestream reads no query parameters for abs; we name the ones given.
    match fails("abs://acct@c/db?endpoint=http://127.0.0.1:10000") {
        UrlError::UnknownParameter { names, .. } => assert_eq!(names, "endpoint"),
        other => panic!("{other:?}"),
    }
}
