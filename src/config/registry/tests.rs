//! The registry config reader against the registry's own verdicts (taken from distribution
//! 2.8's configuration package and checked with `docker-registry` by the integration tests).

use super::*;

fn none(_: &str) -> Option<String> {
    None
}

fn read_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RegistryConfig> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.yml");
    std::fs::write(&p, text).unwrap();
    read(&p, env)
}

fn root(text: &str) -> Result<Location> {
    read_text(text, &none).map(|c| c.storage)
}

fn refused(text: &str) -> String {
    root(text).unwrap_err().to_string()
}

#[test]
fn reads_the_filesystem_root_with_its_override_and_default() {
    let y = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n  delete:\n    enabled: true\n";
    assert_eq!(root(y).unwrap(), Location::Fs("/srv/reg".into()));
    let env = |k: &str| (k == ROOT_ENV).then(|| "/env/root".to_string());
    assert_eq!(
        read_text(y, &env).unwrap().storage,
        Location::Fs("/env/root".into())
    );
    assert_eq!(
        root("version: 0.1\nstorage:\n  filesystem: {}\n").unwrap(),
        Location::Fs("/var/lib/registry".into())
    );
    // A bare driver name, as the registry's UnmarshalYAML takes it.
    assert_eq!(
        root("version: 0.1\nstorage: filesystem\n").unwrap(),
        Location::Fs("/var/lib/registry".into())
    );
    // No storage section: the environment's root completes it, as in the registry.
    assert_eq!(
        read_text("version: 0.1\n", &env).unwrap().storage,
        Location::Fs("/env/root".into())
    );
    // yaml.v2 reads `version: 0.1` as the text 0.1, quoted or not.
    assert!(root("version: \"0.1\"\nstorage: filesystem\n").is_ok());
}

#[test]
fn refuses_what_the_registry_refuses_naming_the_line() {
    // `rootdirectory` one level too shallow: a string where a section belongs.
    let e = refused("version: 0.1\nstorage:\n  filesystem:\n  rootdirectory: /srv/other\n");
    assert!(
        e.contains("config.yml") && e.contains("line 4") && e.contains("rootdirectory"),
        "{e}"
    );
    let e = refused(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /a\n  s3:\n    bucket: b\n",
    );
    assert!(e.contains("must provide exactly one storage type"), "{e}");
    assert!(e.contains("filesystem") && e.contains("s3"), "{e}");
    let e = refused("version: 0.1\nstorage:\n  filesytem:\n    rootdirectory: /a\n");
    assert!(e.contains("unknown storage driver \"filesytem\""), "{e}");
    // Every driver the registry has is read; the ones that store elsewhere than a folder or a
    // bucket are refused by name, and a name the registry does not know as the registry does.
    for driver in ["inmemory", "swift", "oss"] {
        let e = refused(&format!("version: 0.1\nstorage:\n  {driver}:\n    x: y\n"));
        assert!(
            e.contains(&format!("storage driver is {driver}")) && e.contains("gcs and azure"),
            "{e}"
        );
    }
    assert!(refused("storage:\n  filesystem: {}\n").contains("unsupported version: \"\""));
    assert!(refused("version: 0.2\nstorage: filesystem\n").contains("unsupported version"));
    assert!(refused("version: 0.1\n").contains("no storage configuration provided"));
    assert!(refused("version: 0.1\nstorage: [\n").contains("refuses this config"));
    assert!(refused("- a\n- b\n").contains("refuses this config"));
    assert!(
        refused("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: [1]\n")
            .contains("rootdirectory")
    );
    assert!(refused("version: [0.1]\nstorage: filesystem\n").contains("refuses"));
    let missing = read(Path::new("/nonexistent/x.yml"), &none).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/x.yml"));
    let dir = tempfile::tempdir().unwrap();
    let e = read(dir.path(), &none).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn reads_the_gcs_and_azure_drivers_as_the_v3_registry_does() {
    use crate::storage::bucket::Service;
    let bucket = |text: &str, env: &dyn Fn(&str) -> Option<String>| match read_text(text, env) {
        Ok(RegistryConfig {
            storage: Location::Bucket(b),
            ..
        }) => b,
        other => panic!("{other:?}"),
    };
    let y = "version: 0.1\nstorage:\n  gcs:\n    bucket: reg\n    rootdirectory: /r/\n    credentials:\n      type: service_account\n      client_email: a@b.iam.gserviceaccount.com\n";
    let g = bucket(y, &none);
    assert_eq!(
        (g.service, g.url()),
        (Service::Gcs, "gs://reg/r".to_string())
    );
    let json: serde_json::Value = serde_json::from_str(g.key_json.as_deref().unwrap()).unwrap();
    assert_eq!(json["client_email"], "a@b.iam.gserviceaccount.com");
    let env = |k: &str| (k == "REGISTRY_STORAGE_GCS_BUCKET").then(|| "other".to_string());
    assert_eq!(bucket(y, &env).bucket, "other");
    let e = refused("version: 0.1\nstorage:\n  gcs:\n    rootdirectory: r\n");
    assert!(e.contains("no bucket parameter provided"), "{e}");
    let e =
        refused("version: 0.1\nstorage:\n  gcs:\n    bucket: b\n    keyfile: /no/such/key.json\n");
    assert!(e.contains("storage.gcs.keyfile /no/such/key.json"), "{e}");

    let y = "version: 0.1\nstorage:\n  azure:\n    accountname: acct\n    container: reg\n    rootdirectory: /r\n    accountkey: a2V5\n    credentials:\n      type: shared_key\n";
    let a = bucket(y, &none);
    assert_eq!(
        (a.service, a.url()),
        (Service::Azure, "az://reg/r".to_string())
    );
    assert_eq!(
        (a.account.as_deref(), a.account_key.as_deref()),
        (Some("acct"), Some("a2V5"))
    );
    assert_eq!(a.endpoint, None, "the default realm: Azure's own endpoint");
    let env = |k: &str| match k {
        "REGISTRY_STORAGE_AZURE_CREDENTIALS_TYPE" => Some("client_secret".to_string()),
        "REGISTRY_STORAGE_AZURE_CREDENTIALS_TENANTID" => Some("t".into()),
        "REGISTRY_STORAGE_AZURE_CREDENTIALS_CLIENTID" => Some("c".into()),
        "REGISTRY_STORAGE_AZURE_CREDENTIALS_SECRET" => Some("s".into()),
        "REGISTRY_STORAGE_AZURE_REALM" => Some("core.chinacloudapi.cn".into()),
        _ => None,
    };
    let a = bucket(y, &env);
    assert_eq!(a.client_secret.map(|c| c.tenant_id), Some("t".into()));
    assert_eq!(
        a.endpoint.as_deref(),
        Some("https://acct.blob.core.chinacloudapi.cn")
    );
    // v3 refuses a config without a credentials type, or a shared key without its key.
    let e = refused("version: 0.1\nstorage:\n  azure:\n    accountname: a\n    container: c\n");
    assert!(e.contains("invalid credentials type: \"\""), "{e}");
    let e = refused(
        "version: 0.1\nstorage:\n  azure:\n    accountname: a\n    container: c\n    credentials:\n      type: shared_key\n",
    );
    assert!(e.contains("storage.azure.accountkey"), "{e}");
    let e = refused("version: 0.1\nstorage:\n  azure:\n    container: c\n");
    assert!(e.contains("no accountname parameter provided"), "{e}");
}

#[test]
fn reads_the_s3_driver_with_its_environment_overrides() {
    let y = "version: 0.1\nstorage:\n  s3:\n    bucket: reg\n    region: eu-west-1\n    regionendpoint: http://127.0.0.1:9000\n    rootdirectory: /regroot/\n    accesskey: AK\n    secretkey: SK\n";
    let Location::Bucket(s3) = root(y).unwrap() else {
        panic!("not s3")
    };
    assert_eq!(
        (s3.bucket.as_str(), s3.prefix.as_str(), s3.url()),
        ("reg", "regroot", "s3://reg/regroot".to_string())
    );
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(
        (s3.access_key.as_deref(), s3.secret_key.as_deref()),
        (Some("AK"), Some("SK"))
    );
    let env = |k: &str| (k == "REGISTRY_STORAGE_S3_BUCKET").then(|| "other".to_string());
    let Location::Bucket(s3) = read_text(y, &env).unwrap().storage else {
        panic!("not s3")
    };
    assert_eq!(s3.bucket, "other");
    let e = refused("version: 0.1\nstorage:\n  s3:\n    region: x\n");
    assert!(e.contains("bucket") && e.contains("config.yml"), "{e}");
    // An endpoint no HTTP client can use is refused here, before any client sees it.
    let e = refused(
        "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    regionendpoint: 127.0.0.1:5070\n",
    );
    assert!(e.contains("regionendpoint") && e.contains("scheme"), "{e}");
}

#[test]
fn reads_the_blob_descriptor_cache_and_redis() {
    let fs = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n";
    let cache = |text: &str, env: &dyn Fn(&str) -> Option<String>| {
        read_text(&format!("{fs}{text}"), env).map(|c| c.cache)
    };
    assert_eq!(cache("", &none).unwrap(), BlobCache::Off);
    assert_eq!(
        cache("  cache:\n    blobdescriptor: inmemory\n", &none).unwrap(),
        BlobCache::InMemory { local_url: None }
    );
    // The old name, and an unknown type (the registry warns and caches nothing).
    assert_eq!(
        cache("  cache:\n    layerinfo: inmemory\n", &none).unwrap(),
        BlobCache::InMemory { local_url: None }
    );
    assert_eq!(
        cache("  cache:\n    blobdescriptor: memcache\n", &none).unwrap(),
        BlobCache::Off
    );
    let redis = "  cache:\n    blobdescriptor: redis\nredis:\n  addr: 127.0.0.1:6379\n  password: 12345\n  db: 3\n";
    assert_eq!(
        cache(redis, &none).unwrap(),
        BlobCache::Redis(RedisConfig {
            addr: "127.0.0.1:6379".into(),
            username: None,
            password: Some("12345".into()),
            db: 3,
            tls: false,
        })
    );
    let env = |k: &str| match k {
        "REGISTRY_REDIS_ADDR" => Some("10.0.0.1:6380".to_string()),
        "REGISTRY_REDIS_DB" => Some("5".to_string()),
        _ => None,
    };
    let BlobCache::Redis(r) = cache(redis, &env).unwrap() else {
        panic!("not redis")
    };
    assert_eq!((r.addr.as_str(), r.db), ("10.0.0.1:6380", 5));
    // The environment turns the cache on, as in the registry.
    let env =
        |k: &str| (k == "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR").then(|| "inmemory".to_string());
    assert_eq!(
        cache("", &env).unwrap(),
        BlobCache::InMemory { local_url: None }
    );
    // v3's list of addresses and TLS.
    let BlobCache::Redis(r) = cache(
        "  cache:\n    blobdescriptor: redis\nredis:\n  addrs: [h1:1, h2:2]\n  tls:\n    enabled: true\n",
        &none,
    )
    .unwrap() else {
        panic!("not redis")
    };
    assert_eq!((r.addr.as_str(), r.tls), ("h1:1", true));
    let e = cache("  cache:\n    blobdescriptor: redis\n", &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis.addr is not set"), "{e}");
    let e = cache(
        "  cache:\n    blobdescriptor: redis\nredis:\n  addr: h:1\n  db: three\n",
        &none,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 7") || e.contains("db"), "{e}");
}

/// Crafted and random endpoints: each is refused or accepted, none panics, and the accepted
/// ones are URIs the HTTP stack takes with a bucket and key appended.
#[test]
fn endpoints_are_checked_before_any_client_sees_them() {
    for bad in [
        "127.0.0.1:5070",
        "",
        "http://",
        "https://:80",
        "http://h:0",
        "http://h:99999",
        "http://h:port",
        "ftp://h",
        "http://user:pw@h",
        "http://h h",
        "http://h/\u{7f}",
        "http://hü",
        "http://[::1",
        "http://::1:9000",
        "http://h/?q=1",
        "http://h#f",
        "http://a..b",
        "HTTP://h",
    ] {
        assert!(crate::endpoint::check(bad).is_err(), "{bad:?} accepted");
    }
    for good in [
        "http://127.0.0.1:9000",
        "https://s3.eu-west-1.amazonaws.com",
        "http://[::1]:9000",
        "http://minio.local:9000/",
        "http://h/base/path",
    ] {
        assert!(crate::endpoint::check(good).is_ok(), "{good:?} refused");
    }
    // A cheap generator over the characters that matter.
    let alphabet: Vec<char> = "ab1:/[]@?#%. -_hs\u{e9}\t".chars().collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 24) as usize;
        let mut s = String::from(if x & 1 == 0 { "http://" } else { "https://" });
        let mut y = x;
        for _ in 0..len {
            y = y.wrapping_mul(6364136223846793005).wrapping_add(1);
            s.push(alphabet[(y >> 33) as usize % alphabet.len()]);
        }
        if crate::endpoint::check(&s).is_ok() {
            let full = format!("{}/bucket/key", s.trim_end_matches('/'));
            assert!(full.parse::<http::Uri>().is_ok(), "{s:?}");
        }
        let _ = Location::parse("s3://b/p", Some(s));
    }
}

#[test]
fn a_proxy_section_makes_a_pull_through_cache_with_its_ttl() {
    let base = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /r\n";
    let proxy = |extra: &str, env: &dyn Fn(&str) -> Option<String>| {
        read_text(&format!("{base}{extra}"), env).map(|c| c.proxy)
    };
    assert_eq!(proxy("", &none).unwrap(), None);
    let p = proxy("proxy:\n  remoteurl: https://registry-1.docker.io\n", &none)
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.remote_url.as_str(), p.ttl),
        ("https://registry-1.docker.io", PROXY_TTL)
    );
    let p = proxy("proxy:\n  remoteurl: http://u\n  ttl: 24h30m\n", &none)
        .unwrap()
        .unwrap();
    assert_eq!(p.ttl.as_secs(), 88_200);
    let env = |k: &str| (k == "REGISTRY_PROXY_REMOTEURL").then(|| "http://e".to_string());
    assert_eq!(proxy("", &env).unwrap().unwrap().remote_url, "http://e");
    let e = proxy("proxy:\n  remoteurl: http://u\n  ttl: a week\n", &none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("proxy.ttl \"a week\" is not a duration"), "{e}");
}
