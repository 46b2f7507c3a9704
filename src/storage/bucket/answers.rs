//! The answers to batched deletes, checked against their requests before object_store reads
//! them: object_store panics on an S3 answer naming a key it did not ask for, or an Azure part
//! numbered past its batch, and takes a key the answer leaves out for deleted. Such an answer
//! is refused whole, and the removal reads back what went (`remove.rs`).

use bytes::Bytes;
use object_store::client::{HttpError, HttpErrorKind, HttpRequest, HttpResponse};
use object_store::path::Path as Key;
use serde::Deserialize;
use std::collections::HashMap;

/// A batched delete's request, kept to check its answer by.
pub(super) enum Batch {
    /// S3's DeleteObjects: its XML body.
    S3(Bytes),
    /// Azure's blob batch: how many deletes it holds.
    Azure(usize),
}

/// The batch `req` is, when it is one (S3's `POST ?delete`, Azure's `POST ?comp=batch`).
pub(super) fn batch_of(req: &HttpRequest) -> Option<Batch> {
    if *req.method() != http::Method::POST {
        return None;
    }
    let query = req.uri().query().unwrap_or("");
    let body = req.body().as_bytes()?;
    if query.split('&').any(|q| q == "delete" || q == "delete=") {
        return Some(Batch::S3(body.clone()));
    }
    if query.split('&').any(|q| q == "comp=batch") {
        let boundary = boundary_of(req.headers())?;
        let start = [b"--", boundary.as_bytes(), b"\r\n"].concat();
        let parts = body.windows(start.len()).filter(|w| *w == start).count();
        return Some(Batch::Azure(parts));
    }
    None
}

/// `resp` to `batch` if its answer is whole and names only what was asked; else an error the
/// client does not retry (the deletes may have landed: what went is read back).
pub(super) async fn checked(batch: Batch, resp: HttpResponse) -> Result<HttpResponse, HttpError> {
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = body.bytes().await?;
    let verdict = match &batch {
        Batch::S3(asked) => s3(asked, &bytes),
        Batch::Azure(n) => azure(*n, &parts.headers, &bytes),
    };
    match verdict {
        Ok(()) => Ok(HttpResponse::from_parts(parts, bytes.into())),
        Err(why) => Err(HttpError::new(
            HttpErrorKind::Decode,
            std::io::Error::other(format!(
                "the store's answer to a batched delete is not believed: {why}; what went is read back from a listing"
            )),
        )),
    }
}

fn boundary_of(headers: &http::HeaderMap) -> Option<String> {
    let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(ct.strip_prefix("multipart/mixed; boundary=")?.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Delete {
    #[serde(rename = "Object", default)]
    object: Vec<Asked>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Asked {
    key: String,
}

// The shape object_store reads the answer by, so that what parses here parses there.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", rename = "DeleteResult")]
struct Answer {
    #[serde(rename = "$value", default)]
    content: Vec<Said>,
}

#[derive(Deserialize)]
enum Said {
    Deleted(Asked),
    Error(Failed),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
struct Failed {
    key: String,
    code: String,
    message: String,
}

/// An S3 DeleteObjects answer (verbose: every key as deleted or failed) against its request.
fn s3(asked: &[u8], answer: &[u8]) -> Result<(), String> {
    let asked: Delete =
        quick_xml::de::from_reader(asked).map_err(|e| format!("its request: {e}"))?;
    let answer: Answer =
        quick_xml::de::from_reader(answer).map_err(|e| format!("unreadable ({e})"))?;
    // Each asked key, by the path object_store compares answers with; whether it was answered.
    let mut answered: HashMap<Key, bool> = (asked.object.iter())
        .filter_map(|a| Key::parse(&a.key).ok())
        .map(|k| (k, false))
        .collect();
    for said in &answer.content {
        let key = match said {
            Said::Deleted(a) => &a.key,
            Said::Error(f) => &f.key,
        };
        let seen = Key::parse(key)
            .ok()
            .and_then(|k| answered.get_mut(&k))
            .ok_or_else(|| format!("it names {key:?}, a key the request did not ask for"))?;
        *seen = true;
    }
    match answered.iter().find(|(_, seen)| !**seen) {
        Some((k, _)) => Err(format!(
            "it says nothing of {k:?}, a key the request asked for"
        )),
        None => Ok(()),
    }
}

/// An Azure blob batch's answer: one part for each delete asked, numbered 0 to `n - 1`.
fn azure(n: usize, headers: &http::HeaderMap, body: &[u8]) -> Result<(), String> {
    let boundary = boundary_of(headers).ok_or("no multipart boundary in its Content-Type")?;
    let start = [b"--", boundary.as_bytes(), b"\r\n"].concat();
    let next = &start[..start.len() - 2];
    let mut seen = vec![false; n];
    let mut rest = body;
    while let Some(after) = rest.strip_prefix(start.as_slice()) {
        let mut scratch = [httparse::EMPTY_HEADER; 10];
        let Ok(httparse::Status::Complete((at, part))) =
            httparse::parse_headers(after, &mut scratch)
        else {
            return Err("a part's headers are unreadable".into());
        };
        let id = (part.iter())
            .rfind(|h| h.name.eq_ignore_ascii_case("content-id"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        match id.and_then(|i| seen.get_mut(i)) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(format!(
                    "a part is numbered {id:?}, not one of the {n} deletes asked, or twice"
                ));
            }
        }
        let after = &after[at..];
        let Some(end) = after.windows(next.len()).position(|w| w == next) else {
            return Err("it ends inside a part".into());
        };
        rest = &after[end..];
    }
    match seen.iter().position(|s| !s) {
        Some(i) => Err(format!("it says nothing of delete {i} of the {n} asked")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(keys: &[&str]) -> Vec<u8> {
        let objects: String = (keys.iter())
            .map(|k| format!("<Object><Key>{k}</Key></Object>"))
            .collect();
        format!("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{objects}</Delete>")
            .into_bytes()
    }

    fn answer(deleted: &[&str], failed: &[&str]) -> Vec<u8> {
        let d: String = deleted
            .iter()
            .map(|k| format!("<Deleted><Key>{k}</Key></Deleted>"))
            .collect();
        let f: String = (failed.iter())
            .map(|k| {
                format!(
                    "<Error><Key>{k}</Key><Code>InternalError</Code><Message>m</Message></Error>"
                )
            })
            .collect();
        format!("<?xml version=\"1.0\"?><DeleteResult xmlns=\"x\">{d}{f}</DeleteResult>")
            .into_bytes()
    }

    #[test]
    fn an_s3_answer_is_believed_only_when_it_answers_what_was_asked_and_nothing_else() {
        let req = asked(&["a/1", "a/2"]);
        assert_eq!(s3(&req, &answer(&["a/1", "a/2"], &[])), Ok(()));
        assert_eq!(s3(&req, &answer(&["a/1"], &["a/2"])), Ok(()));
        // object_store panics on this one.
        let foreign = s3(&req, &answer(&["a/1"], &["a/2", "b/9"])).unwrap_err();
        assert!(foreign.contains("\"b/9\""), "{foreign}");
        // object_store takes a/2 for deleted.
        let silent = s3(&req, &answer(&["a/1"], &[])).unwrap_err();
        assert!(silent.contains("a/2"), "{silent}");
        assert!(s3(&req, b"<DeleteResult><Error><Key>a/1</Key></Error>").is_err());
    }

    fn part(id: &str) -> String {
        format!(
            "--b\r\nContent-Type: application/http\r\nContent-ID: {id}\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n"
        )
    }

    #[test]
    fn an_azure_answer_is_believed_only_with_one_part_for_each_delete() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "multipart/mixed; boundary=b".parse().unwrap(),
        );
        let body = |ids: &[&str]| {
            format!(
                "{}--b--\r\n",
                ids.iter().map(|i| part(i)).collect::<String>()
            )
        };
        assert_eq!(azure(2, &h, body(&["0", "1"]).as_bytes()), Ok(()));
        assert_eq!(azure(2, &h, body(&["1", "0"]).as_bytes()), Ok(()));
        // object_store indexes past its list on 7 (a panic), and takes a missing part for done.
        for ids in [&["0", "7"][..], &["0"], &["0", "0"], &["0", "x"]] {
            assert!(azure(2, &h, body(ids).as_bytes()).is_err(), "{ids:?}");
        }
        assert!(azure(1, &h, b"--b\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202").is_err());
    }
}
