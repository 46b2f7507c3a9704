//! `regsweep report`: one self-contained HTML page from the JSON reports of `du`, `gc
//! --dry-run` and `pulls status`. Styles, the SVG and a few lines of script are inline, so the
//! page opens offline; the tables read without script (which only sorts them). Built with maud,
//! whose templates escape every value: a repository or tag name is data, never markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

/// The reports the page is made of; at least one is given.
#[derive(Debug, Default)]
pub struct Inputs {
    pub du: Option<Value>,
    pub plan: Option<PlanReport>,
    pub pulls: Option<Value>,
    /// `du --by tag` reports: each repository's tags, drawn inside it.
    pub tags: Vec<Value>,
}

/// A gc report as the page reads it. Its lists of blobs and layer links are most of a large
/// plan and the page shows only what the blobs free per repository: that is summed as the list
/// is read, and neither list is kept (a `Value` tree costs about ten times its text).
#[derive(Debug, Default)]
pub struct PlanReport {
    /// Every field but `blobs_deleted` and `layer_links_deleted`.
    pub report: Value,
    /// The bytes of the planned blobs each repository linked (a blob linked from several
    /// counts in each).
    pub freed_by_repo: std::collections::BTreeMap<String, u64>,
}

impl PlanReport {
    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<PlanReport> {
        #[derive(serde::Deserialize)]
        struct Lean {
            #[serde(default)]
            blobs_deleted: ByRepo,
            #[serde(default, rename = "layer_links_deleted")]
            _links: serde::de::IgnoredAny,
            #[serde(flatten)]
            rest: serde_json::Map<String, Value>,
        }
        let lean: Lean = serde_json::from_slice(bytes)?;
        Ok(PlanReport {
            report: Value::Object(lean.rest),
            freed_by_repo: lean.blobs_deleted.0,
        })
    }
}

/// `blobs_deleted`, summed per repository one item at a time.
#[derive(Default)]
struct ByRepo(std::collections::BTreeMap<String, u64>);

impl<'de> serde::Deserialize<'de> for ByRepo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByRepo, D::Error> {
        #[derive(serde::Deserialize)]
        struct Item {
            #[serde(default)]
            size: u64,
            #[serde(default)]
            linked_from: Vec<String>,
        }
        struct Each;
        impl<'de> serde::de::Visitor<'de> for Each {
            type Value = ByRepo;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of planned blobs")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ByRepo, A::Error> {
                let mut out = ByRepo::default();
                while let Some(b) = seq.next_element::<Item>()? {
                    for r in b.linked_from {
                        let total = out.0.entry(r).or_default();
                        *total = total.saturating_add(b.size);
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Each)
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}th,td{padding:2px 10px;text-align:left}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}th{cursor:pointer;background:#f3f3f3}\
tr:nth-child(even) td{background:#fafafa}.bad{color:#a00}.note{color:#666}\
svg text{font-size:11px;pointer-events:none}";

/// Sorts a table by the clicked column (numbers by their `data-v`); nothing else.
const SCRIPT: &str = "document.querySelectorAll('table.sort th').forEach(function(th,i){\
th.addEventListener('click',function(){var t=th.closest('table'),b=t.tBodies[0];\
var rows=Array.prototype.slice.call(b.rows),d=th.dataset.d=th.dataset.d==='a'?'d':'a';\
rows.sort(function(x,y){var a=x.cells[i],c=y.cells[i];var p=a.dataset.v!==undefined?\
Number(a.dataset.v)-Number(c.dataset.v):a.textContent.localeCompare(c.textContent);\
return d==='a'?p:-p});rows.forEach(function(r){b.appendChild(r)})})});";

/// Rows of planned tags listed per rule: the page stays small at any size (a few hundred
/// bytes a row); the JSON has them all.
const ROWS: usize = 1000;

fn bytes(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn human(n: u64) -> String {
    crate::units::human_bytes(n)
}

/// `n` and the word, plural unless one.
fn count(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The whole page.
pub fn render(i: &Inputs) -> String {
    let plan = i.plan.as_ref().map(|p| &p.report);
    let root = [i.du.as_ref(), plan, i.pulls.as_ref()]
        .into_iter()
        .flatten()
        .map(|v| text(v, "root").to_string())
        .next()
        .unwrap_or_default();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "regsweep: " (root) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "regsweep report: " (root) }
                @if let Some(du) = &i.du { (space(du, &i.tags)) }
                @if let Some(plan) = &i.plan { (plan_section(plan)) }
                @if let Some(p) = &i.pulls {
                    @let asked = plan.and_then(|pl| pl["used"]["windows"].as_array());
                    (ledger(p, asked.map_or(&[][..], Vec::as_slice)))
                }
                @for v in [i.du.as_ref(), plan].into_iter().flatten() {
                    @if let Some(r) = v["summary"]["requests"].as_object() { (requests(r)) }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    page.into_string()
}

/// Where the space is: a treemap of repositories (what only each holds apart from what it
/// shares) and the top 20 table.
fn space(du: &Value, by_tag: &[Value]) -> Markup {
    let empty = vec![];
    let repos = du["repositories"].as_array().unwrap_or(&empty);
    let s = &du["summary"];
    let mut sized: Vec<(&Value, u64)> = repos.iter().map(|r| (r, bytes(&r["bytes"]))).collect();
    sized.sort_by_key(|s| std::cmp::Reverse(s.1));
    let mut rects = Vec::new();
    let items: Vec<(usize, u64)> = sized
        .iter()
        .enumerate()
        .map(|(n, (_, b))| (n, *b))
        .collect();
    split(&items, (0.0, 0.0, 960.0, 420.0), &mut rects);
    html! {
        h2 { "Space" }
        p {
            (bytes(&s["blobs"])) " blobs, " (human(bytes(&s["bytes"]))) " in "
            (bytes(&s["repositories"])) " repositories (a blob shared by many counts once); gc frees "
            (human(bytes(&s["reclaimable_bytes"]))) " now, "
            (human(bytes(&s["reclaimable_untagged_bytes"]))) " with --delete-untagged."
        }
        svg width="960" height="420" viewBox="0 0 960 420" role="img" {
            title { "bytes by repository: dark what only it holds, light what it shares, the orange band what -m would free" }
            @for (n, (x, y, w, h)) in &rects {
                @let r = sized[*n].0;
                @let total = bytes(&r["bytes"]).max(1) as f64;
                @let own = *w * bytes(&r["exclusive_bytes"]) as f64 / total;
                g {
                    title { (text(r, "name")) ": " (human(bytes(&r["bytes"]))) ", "
                        (human(bytes(&r["exclusive_bytes"]))) " its own, "
                        (human(bytes(&r["shared_bytes"]))) " shared, "
                        (human(bytes(&r["untagged_bytes"]))) " untagged" }
                    rect x=(x) y=(y) width=(own) height=(h) fill="#3a6ea5" stroke="#fff" {}
                    rect x=(x + own) y=(y) width=(w - own) height=(h) fill="#9fbfdf" stroke="#fff" {}
                    // The untagged share: a band at the foot, its height the share of the size.
                    @let band = *h * (bytes(&r["untagged_bytes"]) as f64 / total).min(1.0);
                    @if band > 0.0 {
                        rect.untagged x=(x) y=(y + h - band) width=(w) height=(band) fill="#e8913a" fill-opacity="0.85" {}
                    }
                    @if let Some(t) = by_tag.iter().find(|t| t["repository"] == r["name"]) {
                        (tag_rects(t, (*x, *y, own, *h)))
                    }
                    @if *w > 60.0 && *h > 16.0 {
                        text x=(x + 4.0) y=(y + 13.0) fill="#fff" { (text(r, "name")) }
                    }
                }
            }
        }
        p.note { span style="color:#3a6ea5" { "■" } " what only the repository holds; "
            span style="color:#9fbfdf" { "■" } " what it shares; "
            span style="color:#e8913a" { "■" } " the untagged share, what gc --delete-untagged would free of it." }
        table.sort #repositories {
            thead { tr {
                th { "repository" } th.n { "tags" } th.n { "size" } th.n { "exclusive" }
                th.n { "shared" } th.n { "untagged" }
            } }
            tbody {
                @for (r, _) in sized.iter().take(20) {
                    tr {
                        td { (text(r, "name")) }
                        td.n data-v=(bytes(&r["tags"])) { (bytes(&r["tags"])) }
                        @for k in ["bytes", "exclusive_bytes", "shared_bytes", "untagged_bytes"] {
                            td.n data-v=(bytes(&r[k])) { (human(bytes(&r[k]))) }
                        }
                    }
                }
            }
        }
        @if sized.len() > 20 { p.note { (sized.len() - 20) " more repositories in the JSON." } }
        @for t in by_tag { (tag_table(t)) }
    }
}

/// A repository's tags inside the part only it holds: each tag's own bytes (what deleting it
/// alone frees) as its rectangle; what several of its tags share is the rest of that part.
fn tag_rects(t: &Value, rect: Rect) -> Markup {
    let empty = vec![];
    let tags = t["tags"].as_array().unwrap_or(&empty);
    let own: Vec<u64> = tags.iter().map(|g| bytes(&g["exclusive_bytes"])).collect();
    let repo = (t["repositories"].as_array().unwrap_or(&empty).iter())
        .find(|r| r["name"] == t["repository"])
        .map_or(0, |r| bytes(&r["exclusive_bytes"]));
    let mut items: Vec<(usize, u64)> = own
        .iter()
        .copied()
        .enumerate()
        .filter(|i| i.1 > 0)
        .collect();
    items.sort_by_key(|i| std::cmp::Reverse(i.1));
    // The shared rest, so that each tag's area is its share of the repository's own bytes.
    items.push((usize::MAX, repo.saturating_sub(own.iter().sum())));
    let mut rects = Vec::new();
    split(&items, rect, &mut rects);
    html! {
        @for (n, (x, y, w, h)) in rects.iter().filter(|(n, _)| *n != usize::MAX) {
            g.tag {
                title { (text(t, "repository")) ":" (text(&tags[*n], "tag")) ": "
                    (human(own[*n])) " only it holds" }
                rect x=(x) y=(y) width=(w) height=(h) fill="#2f5b8a" stroke="#c8d8ea" {}
                @if *w > 50.0 && *h > 30.0 {
                    text x=(x + 4.0) y=(y + 26.0) fill="#dde8f3" { (fit(text(&tags[*n], "tag"), *w)) }
                }
            }
        }
    }
}

/// `name` cut to what a label `width` pixels wide holds (about 6.5 pixels a character).
fn fit(name: &str, width: f64) -> String {
    let room = ((width - 8.0) / 6.5).max(1.0) as usize;
    if name.chars().count() <= room {
        name.to_string()
    } else {
        name.chars()
            .take(room.saturating_sub(1))
            .chain(['…'])
            .collect()
    }
}

/// One repository's tags, as `du --by tag` counted them.
fn tag_table(t: &Value) -> Markup {
    let empty = vec![];
    let tags = t["tags"].as_array().unwrap_or(&empty);
    html! {
        h3 { "Tags of " (text(t, "repository")) }
        table.sort.tags {
            thead { tr { th { "tag" } th.n { "size" } th.n { "only it holds" } } }
            tbody { @for g in tags.iter().take(ROWS) { tr {
                td { (text(g, "tag")) }
                td.n data-v=(bytes(&g["bytes"])) { (human(bytes(&g["bytes"]))) }
                td.n data-v=(bytes(&g["exclusive_bytes"])) { (human(bytes(&g["exclusive_bytes"]))) }
            } } }
        }
        @if tags.len() > ROWS { p.note { (tags.len() - ROWS) " more tags in the JSON." } }
    }
}

/// x, y, width, height.
type Rect = (f64, f64, f64, f64);

/// A treemap's rectangles: the items (index, size) split in two halves of about equal size
/// along the longer side, and so on down; each rectangle's area is its share.
fn split(items: &[(usize, u64)], (x, y, w, h): Rect, out: &mut Vec<(usize, Rect)>) {
    match items {
        [] => {}
        [(n, _)] => out.push((*n, (x, y, w, h))),
        _ => {
            let total: u64 = items.iter().map(|i| i.1).sum::<u64>().max(1);
            let mut acc = 0;
            let mut cut = 1;
            for (k, (_, b)) in items.iter().enumerate() {
                if k > 0 && acc * 2 >= total {
                    break;
                }
                acc += b;
                cut = k + 1;
            }
            let cut = cut.min(items.len() - 1);
            let share = items[..cut].iter().map(|i| i.1).sum::<u64>() as f64 / total as f64;
            let (a, b) = items.split_at(cut);
            if w >= h {
                split(a, (x, y, w * share, h), out);
                split(b, (x + w * share, y, w * (1.0 - share), h), out);
            } else {
                split(a, (x, y, w, h * share), out);
                split(b, (x, y + h * share, w, h * (1.0 - share)), out);
            }
        }
    }
}

/// What the plan takes and why, by rule; what it keeps for use; what is damaged.
fn plan_section(p: &PlanReport) -> Markup {
    let plan = &p.report;
    let empty = vec![];
    let tags = plan["tags_deleted"].as_array().unwrap_or(&empty);
    let mut rules: std::collections::BTreeMap<&str, Vec<&Value>> = Default::default();
    for t in tags {
        rules.entry(text(t, "rule")).or_default().push(t);
    }
    let s = &plan["summary"];
    let damage: Vec<&Value> = (plan["errors"].as_array().unwrap_or(&empty).iter())
        .filter(|e| e["severity"] != "notice")
        .collect();
    let by_repo = &p.freed_by_repo;
    html! {
        h2 { "The plan" }
        p {
            (count(bytes(&s["tags_deleted"]), "tag")) ", " (count(bytes(&s["manifests_deleted"]), "manifest")) ", "
            (count(bytes(&s["blobs_deleted"]), "blob")) ": " (human(bytes(&s["bytes_freed"]))) " freed"
            @if plan["dry_run"] == true { " (a dry run: nothing was deleted)" }
        }
        @for r in plan["refused"].as_array().unwrap_or(&empty) {
            p.bad { "refused: " (r.as_str().unwrap_or("")) }
        }
        @let refused = plan["refused_tags"].as_array().unwrap_or(&empty);
        @if !refused.is_empty() {
            table.sort #plan-refused {
                thead { tr { th { "tag the policy would delete (refused: none was)" } th { "rule" } } }
                tbody { @for t in refused.iter().take(ROWS) { tr {
                    td { (text(t, "repository")) ":" (text(t, "tag")) } td { (text(t, "rule")) }
                } } }
            }
        }
        table.sort #plan {
            thead { tr { th { "tag" } th { "rule" } th.n { "age" } th { "digest" } } }
            tbody {
                @for (rule, list) in &rules {
                    @for t in list.iter().take(ROWS) {
                        tr {
                            td { (text(t, "repository")) ":" (text(t, "tag")) }
                            td { (rule) }
                            td.n data-v=(t["age_seconds"].as_i64().unwrap_or(0)) {
                                (crate::units::human_age(t["age_seconds"].as_i64().unwrap_or(0)))
                            }
                            td { code { (text(t, "digest")) } }
                        }
                    }
                }
            }
        }
        p { @for (rule, list) in &rules { "rule " (rule) ": " (count(list.len() as u64, "tag"))
            @if list.len() > ROWS { " (the first " (ROWS) " listed; all are in the JSON)" } ". " } }
        @if let Some(freed) = plan["rules_freed"].as_array().filter(|f| !f.is_empty()) {
            table.sort #plan-rules {
                thead { tr { th { "rule" } th.n { "tags" } th.n { "blob bytes its images reach" } } }
                tbody { @for r in freed { tr { td { (text(r, "rule")) } td.n { (bytes(&r["tags"])) }
                    td.n data-v=(bytes(&r["bytes"])) { (human(bytes(&r["bytes"]))) } } } }
            }
            p { "A blob that two rules' images share counts in each." }
        }
        table.sort #plan-repositories {
            thead { tr { th { "repository" } th.n { "blob bytes to free" } } }
            tbody { @for (r, b) in by_repo { tr { td { (r) } td.n data-v=(b) { (human(*b)) } } } }
        }
        @for st in plan["space"].as_array().unwrap_or(&empty) {
            p { (text(st, "what")) ": " (human(bytes(&st["used"]))) " used, high " (text(st, "high"))
                ", low " (text(st, "low")) ": " (bytes(&st["tags"])) " tags taken, projected "
                (human(bytes(&st["projected"]))) }
        }
        @if let Some(u) = plan["used"].as_object() {
            @let pinned = u.get("manifests_protected").and_then(Value::as_array).unwrap_or(&empty);
            p { "Kept for use: " (count(u.get("tags_protected").map_or(0, bytes), "tag")) " and "
                (count(pinned.len() as u64, "manifest")) " protected." }
            @if !pinned.is_empty() {
                table.sort #plan-pinned {
                    thead { tr { th { "manifest kept for use" } th { "why" } } }
                    tbody { @for m in pinned.iter().take(ROWS) { tr {
                        td { (text(m, "repository")) "@" code { (text(m, "digest")) } }
                        td { (text(m, "why")) }
                    } } }
                }
            }
        }
        @let protected: Vec<(&Value, &str)> = (plan["explain"].as_array().unwrap_or(&empty).iter())
            .filter(|e| e["delete"] == false)
            .filter_map(|e| {
                let why = (e["reasons"].as_array()?.iter()).filter_map(Value::as_str)
                    .find(|r| r.starts_with("protected"))?;
                Some((e, why))
            })
            .collect();
        @if !protected.is_empty() {
            table.sort #plan-protected {
                thead { tr { th { "tag kept by a protection" } th { "why" } } }
                tbody { @for (e, why) in protected.iter().take(ROWS) { tr {
                    td { (text(e, "repository")) ":" (text(e, "tag")) } td { (why) }
                } } }
            }
        }
        @if !damage.is_empty() {
            h3 { "Damage and errors" }
            ul { @for e in &damage { li.bad { (text(e, "path")) ": " (text(e, "message")) } } }
        }
    }
}

/// The ledger: per stream a line of the window, its intervals of proof drawn, the holes red;
/// under them the window each pull rule of the plan asked about.
fn ledger(p: &Value, asked: &[Value]) -> Markup {
    let empty = vec![];
    let s = &p["summary"];
    let at = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp())
    };
    // The axis spans the status window and every window a rule asked about.
    let ends = |status: i64, k: &'static str| -> Vec<i64> {
        let asked = asked.iter().filter_map(|w| w[k].as_i64());
        (Some(status).filter(|t| *t > 0).into_iter())
            .chain(asked)
            .collect()
    };
    let from = ends(at(&s["window_from"]), "from")
        .into_iter()
        .min()
        .unwrap_or(0);
    let until = ends(at(&s["window_until"]), "until")
        .into_iter()
        .max()
        .unwrap_or(0);
    let span = (until - from).max(1) as f64;
    let xof = |t: i64| 200.0 + 740.0 * ((t.clamp(from, until) - from) as f64 / span);
    let streams = p["streams"].as_array().unwrap_or(&empty);
    let height = 30 + 24 * streams.len() + 22 * asked.len();
    html! {
        h2 { "The pull ledger" }
        p {
            @if s["covered"] == true { "The window " (text(s, "window_from")) " to " (text(s, "window_until")) " is covered: pull rules over it are judged." }
            @else { span.bad { "Not covered: " (s["refusal"].as_str().unwrap_or("")) } }
        }
        svg width="960" height=(height) role="img" {
            title { "intervals of proof per stream over the window; holes in red" }
            rect x="200" y="4" width="740" height=(height - 8) fill="#fbeaea" {}
            @for (k, st) in streams.iter().enumerate() {
                @let y = 14 + 24 * k;
                text x="0" y=(y + 12) { (text(st, "source")) " " (text(st, "instance")) }
                @for iv in st["intervals"].as_array().unwrap_or(&empty) {
                    @let (a, b) = (xof(at(&iv[0])), xof(at(&iv[1])));
                    rect x=(a) y=(y) width=((b - a).max(1.0)) height="16" fill="#4a9a5a" {
                        title { (iv[0].as_str().unwrap_or("")) " to " (iv[1].as_str().unwrap_or("")) }
                    }
                }
            }
            @for (k, w) in asked.iter().enumerate() {
                @let y = 14 + 24 * streams.len() + 22 * k;
                @let (a, b) = (xof(w["from"].as_i64().unwrap_or(0)), xof(w["until"].as_i64().unwrap_or(0)));
                g.asked {
                    title { (text(w, "what")) ": asks the ledger to cover this window" }
                    text x="0" y=(y + 12) { (fit(text(w, "what"), 196.0)) }
                    rect x=(a) y=(y + 6) width=((b - a).max(1.0)) height="4" fill="#444" {}
                    rect x=(a) y=(y) width="2" height="16" fill="#444" {}
                    rect x=(b - 2.0) y=(y) width="2" height="16" fill="#444" {}
                }
            }
        }
        @let holes = p["holes"].as_array().unwrap_or(&empty);
        @if !holes.is_empty() {
            ul { @for h in holes { li.bad { (text(h, "instance")) ": no evidence from " (text(h, "from")) " to " (text(h, "until")) } } }
        }
        @for r in p["rejections"].as_array().unwrap_or(&empty) {
            p.bad { (bytes(&r["count"])) " deliveries rejected (" (r["status"]) " " (text(r, "reason")) ")" }
        }
    }
}

/// An object store's requests by kind.
fn requests(r: &serde_json::Map<String, Value>) -> Markup {
    html! {
        h2 { "Requests to the object store" }
        table { tbody { @for (k, v) in r { tr { td { (k) } td.n { (v) } } } } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_plan_shows_what_it_would_have_taken_apart() {
        let plan = serde_json::json!({"summary": {}, "refused": ["r: every one of its 1 tags"],
            "tags_deleted": [], "refused_tags": [{"repository": "r", "tag": "v1", "rule": "all"}]});
        let page = render(&Inputs {
            plan: Some(PlanReport::from_slice(plan.to_string().as_bytes()).unwrap()),
            ..Inputs::default()
        });
        assert!(page.contains("id=\"plan-refused\""), "{page}");
        assert!(page.contains("<td>r:v1</td><td>all</td>"), "{page}");
    }

    #[test]
    fn a_plan_is_read_without_its_item_lists_and_its_blobs_summed_per_repository() {
        let plan = serde_json::json!({"schema": "regsweep/gc-report/v2", "summary": {},
            "blobs_deleted": [{"digest": "sha256:a", "size": 10, "linked_from": ["x", "y"]},
                              {"digest": "sha256:b", "size": 5, "linked_from": ["x"]},
                              {"digest": "sha256:c", "size": 7, "linked_from": []}],
            "layer_links_deleted": [{"repository": "x", "digest": "sha256:a"}]});
        let p = PlanReport::from_slice(plan.to_string().as_bytes()).unwrap();
        let want: std::collections::BTreeMap<String, u64> =
            [("x".into(), 15), ("y".into(), 10)].into();
        assert_eq!(p.freed_by_repo, want);
        assert!(
            p.report.get("blobs_deleted").is_none()
                && p.report.get("layer_links_deleted").is_none()
        );
        assert_eq!(p.report["schema"], "regsweep/gc-report/v2");
        let page = render(&Inputs {
            plan: Some(p),
            ..Inputs::default()
        });
        assert!(
            page.contains("<td>x</td><td class=\"n\" data-v=\"15\">"),
            "{page}"
        );
        // A list of the wrong shape is refused, not read as nothing.
        assert!(PlanReport::from_slice(br#"{"blobs_deleted": {"a": 1}}"#).is_err());
    }

    #[test]
    fn the_ledger_draws_the_window_each_pull_rule_asked_about() {
        let pulls = serde_json::json!({"summary": {"covered": true,
            "window_from": "2026-01-15T00:00:00Z", "window_until": "2026-01-29T00:00:00Z"},
            "streams": [{"source": "webhook", "instance": "r:5000",
                "intervals": [["2026-01-15T00:00:00Z", "2026-01-29T00:00:00Z"]]}]});
        // A 30-day rule reaches before the status window: the axis widens to hold it.
        let plan = serde_json::json!({"summary": {}, "used": {"windows": [
            {"what": "rule \"unused\" (not_pulled_for: 30d)", "from": 1_767_225_600i64, "until": 1_769_644_800i64}]}});
        let page = render(&Inputs {
            pulls: Some(pulls),
            plan: Some(PlanReport::from_slice(plan.to_string().as_bytes()).unwrap()),
            ..Inputs::default()
        });
        assert_eq!(page.matches("<g class=\"asked\">").count(), 1, "{page}");
        assert!(page.contains("not_pulled_for: 30d"), "{page}");
        // The rule's window starts at the axis's left edge (x = 200).
        assert!(page.contains("<rect x=\"200\" y=\"44\""), "{page}");
    }

    #[test]
    fn names_are_escaped_and_the_treemap_covers_its_box() {
        let du = serde_json::json!({"root": "/r", "summary": {"bytes": 30},
            "repositories": [{"name": "<script>alert(1)</script>", "bytes": 20, "exclusive_bytes": 5},
                             {"name": "b", "bytes": 10}]});
        let page = render(&Inputs {
            du: Some(du),
            ..Inputs::default()
        });
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let mut out = Vec::new();
        split(
            &[(0, 20), (1, 10), (2, 10)],
            (0.0, 0.0, 100.0, 50.0),
            &mut out,
        );
        let area: f64 = out.iter().map(|(_, (_, _, w, h))| w * h).sum();
        assert!((area - 5000.0).abs() < 1e-6 && out.len() == 3, "{out:?}");
    }
}
