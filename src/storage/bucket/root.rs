//! Where a bucket is and how to reach it, for each service the registry has a driver for (s3,
//! gcs, azure), and the one place an `object_store` client is built for it. Everything past the
//! client is the same for the three: the key layout below the `rootdirectory` is the same.

use super::client::CountingConnector;
use super::errors::first_line;
use object_store::{ObjectStore, RetryConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The object store a bucket is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Service {
    /// S3 or an S3-compatible server (the registry's `s3` driver).
    #[default]
    S3,
    /// Google Cloud Storage (the `gcs` driver).
    Gcs,
    /// Azure Blob Storage (the `azure` driver); the bucket is the container.
    Azure,
}

impl Service {
    /// The URL scheme `--root` takes and reports print: object_store's own.
    pub fn scheme(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Gcs => "gs",
            Service::Azure => "az",
        }
    }

    /// Whether regsweep may change a bucket on it: every change happens under the lock, and a
    /// GCS lock (a create-only write, `ifGenerationMatch=0`) has not been proven against a
    /// server that honours it (fake-gcs-server, the emulator the tests run, ignores the
    /// condition). Reading needs no lock.
    pub fn sweeps(self) -> bool {
        self != Service::Gcs
    }

    /// Whether a listed ETag is the MD5 of an object written in one plain request, so that a
    /// link's content can be proven without reading it. S3: yes (not for multipart). GCS: its
    /// XML API's ETag is the MD5 of a non-composite object, and links are never composed.
    /// Azure: no (an opaque version; the registry writes links as append blobs, which carry no
    /// Content-MD5), so every link is read.
    pub fn etag_is_md5(self) -> bool {
        matches!(self, Service::S3 | Service::Gcs)
    }
}

/// Azure's service-principal credentials (`credentials: {type: client_secret, ...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSecret {
    pub tenant_id: String,
    pub client_id: String,
    pub secret: String,
}

/// A registry's storage in a bucket: what its driver config says (or `--root s3://...`,
/// `gs://...`, `az://...`). Credentials left out here come from each ecosystem's usual sources:
/// the `AWS_*` environment and instance roles; `GOOGLE_APPLICATION_CREDENTIALS`,
/// `GOOGLE_SERVICE_ACCOUNT` and workload identity; the `AZURE_STORAGE_*` environment and managed
/// identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketRoot {
    pub service: Service,
    /// The bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// The driver's `rootdirectory` without its slashes: keys start with `<prefix>/docker/`.
    pub prefix: String,
    /// `--endpoint`: S3's `regionendpoint` (path-style requests), GCS's base URL, Azure's
    /// `serviceurl` (the account's URL), for an emulator or a private endpoint.
    pub endpoint: Option<String>,
    /// S3: the region and keys.
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    /// Azure: the storage account, its shared key, or a service principal.
    pub account: Option<String>,
    pub account_key: Option<String>,
    pub client_secret: Option<ClientSecret>,
    /// GCS: a service account key file (`keyfile`), or the key itself as JSON (`credentials`).
    pub key_file: Option<PathBuf>,
    pub key_json: Option<String>,
    /// `--s3-concurrency`: requests in flight at most (default [`super::gate::DEFAULT_CONCURRENCY`]).
    pub concurrency: Option<usize>,
    /// `--max-requests-per-second`.
    pub max_rps: Option<u32>,
    /// `--request-timeout`: one request's limit (default 30 s).
    pub timeout: Option<Duration>,
}

/// How long one request may take when `--request-timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl BucketRoot {
    pub fn url(&self) -> String {
        let scheme = self.service.scheme();
        if self.prefix.is_empty() {
            format!("{scheme}://{}", self.bucket)
        } else {
            format!("{scheme}://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The key prefix of the storage root: empty, or `prefix/`.
    pub fn key_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// The client for this bucket, its requests through `connector`; or why not, in a line.
    pub(super) fn build(
        &self,
        connector: CountingConnector,
        concurrency: usize,
    ) -> Result<Arc<dyn ObjectStore>, String> {
        if let Some(e) = &self.endpoint {
            crate::endpoint::check(e).map_err(|why| format!("endpoint {why}"))?;
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        // Retries (with backoff) end three timeouts after the first attempt: a slow request
        // gets a second chance, an endpoint that stopped answering fails the run soon.
        let retry = RetryConfig {
            max_retries: 5,
            retry_timeout: timeout * 3,
            ..RetryConfig::default()
        };
        // Keeps as many connections open as requests may be in flight; a request that takes
        // longer than the timeout is retried, then fails its waiter (an endpoint that stops
        // answering ends the run, naming it).
        let pool = [
            (
                object_store::ClientConfigKey::PoolMaxIdlePerHost,
                concurrency.to_string(),
            ),
            (
                object_store::ClientConfigKey::Timeout,
                format!("{}ms", timeout.as_millis().max(1)),
            ),
        ];
        crate::endpoint::install_tls();
        let built: object_store::Result<Arc<dyn ObjectStore>> = match self.service {
            Service::S3 => self.s3(connector, retry, &pool),
            Service::Gcs => self.gcs(connector, retry, &pool),
            Service::Azure => self.azure(connector, retry, &pool),
        };
        built.map_err(|e| first_line(&e.to_string()))
    }

    fn s3(
        &self,
        connector: CountingConnector,
        retry: RetryConfig,
        client: &[(object_store::ClientConfigKey, String)],
    ) -> object_store::Result<Arc<dyn ObjectStore>> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_http_connector(connector)
            .with_retry(retry);
        for (key, value) in client {
            b = b.with_config(AmazonS3ConfigKey::Client(*key), value);
        }
        if let Some(e) = &self.endpoint {
            // The registry's `regionendpoint`: path-style requests, as the registry makes them.
            b = b
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let (Some(k), Some(s)) = (&self.access_key, &self.secret_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
        }
        if let Some(t) = &self.session_token {
            b = b.with_token(t);
        }
        // The endpoint may come from AWS_ENDPOINT too: checked whichever way it came, since the
        // crate panics on one it cannot build a request from.
        if let Some(e) = b.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            crate::endpoint::check(&e).map_err(|why| generic(format!("endpoint {why}")))?;
        }
        Ok(Arc::new(b.build()?))
    }

    fn gcs(
        &self,
        connector: CountingConnector,
        retry: RetryConfig,
        client: &[(object_store::ClientConfigKey, String)],
    ) -> object_store::Result<Arc<dyn ObjectStore>> {
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
        let mut b = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&self.bucket)
            .with_http_connector(connector)
            .with_retry(retry);
        for (key, value) in client {
            b = b.with_config(GoogleConfigKey::Client(*key), value);
        }
        if let Some(f) = &self.key_file {
            b = b.with_service_account_path(f.to_string_lossy());
        }
        if let Some(k) = &self.key_json {
            b = b.with_service_account_key(k);
        }
        if let Some(e) = &self.endpoint {
            b = b.with_base_url(e.trim_end_matches('/'));
            if e.starts_with("http://") {
                let allow = GoogleConfigKey::Client(object_store::ClientConfigKey::AllowHttp);
                b = b.with_config(allow, "true");
            }
            let has_key = [
                GoogleConfigKey::ServiceAccount,
                GoogleConfigKey::ServiceAccountKey,
                GoogleConfigKey::ApplicationCredentials,
            ]
            .iter()
            .any(|k| b.get_config_value(k).is_some());
            // An emulator (fake-gcs-server) checks no credentials: with none given, requests
            // to a named endpoint go unsigned rather than asking the metadata server.
            if !has_key {
                b = b.with_skip_signature(true);
            }
        }
        Ok(Arc::new(b.build()?))
    }

    fn azure(
        &self,
        connector: CountingConnector,
        retry: RetryConfig,
        client: &[(object_store::ClientConfigKey, String)],
    ) -> object_store::Result<Arc<dyn ObjectStore>> {
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_container_name(&self.bucket)
            .with_http_connector(connector)
            .with_retry(retry);
        for (key, value) in client {
            b = b.with_config(AzureConfigKey::Client(*key), value);
        }
        if let Some(a) = &self.account {
            b = b.with_account(a);
        }
        if let Some(k) = &self.account_key {
            b = b.with_access_key(k);
        }
        if let Some(c) = &self.client_secret {
            b = b
                .with_tenant_id(&c.tenant_id)
                .with_client_id(&c.client_id)
                .with_client_secret(&c.secret);
        }
        if let Some(e) = &self.endpoint {
            // The account's URL (the driver's `serviceurl`), Azurite's included:
            // http://127.0.0.1:10000/devstoreaccount1. The flag wins over
            // AZURE_STORAGE_USE_EMULATOR, which would send every request to the emulator's
            // default address instead; the emulator's account and its published key stay the
            // defaults then.
            let emulated =
                b.get_config_value(&AzureConfigKey::UseEmulator).as_deref() == Some("true");
            let account =
                |b: &MicrosoftAzureBuilder| b.get_config_value(&AzureConfigKey::AccountName);
            if emulated {
                b = b.with_use_emulator(false);
                if account(&b).is_none() {
                    b = b.with_account(AZURITE_ACCOUNT);
                }
                let key = b.get_config_value(&AzureConfigKey::AccessKey);
                if key.is_none() && account(&b).as_deref() == Some(AZURITE_ACCOUNT) {
                    b = b.with_access_key(AZURITE_KEY);
                }
            }
            b = b
                .with_endpoint(e.trim_end_matches('/').to_string())
                .with_allow_http(e.starts_with("http://"));
        }
        Ok(Arc::new(b.build()?))
    }
}

/// Azurite's account and the key Microsoft publishes for it (the emulator's documented
/// defaults, not a secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "endpoint",
        source: message.into(),
    }
}
