//! Tag decisions: which tags stay (roots for mark) and which go, and by which rule.

use crate::model::Layout;

/// What happens to one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep,
    /// Deleted by the named rule.
    Delete {
        rule: String,
    },
}

/// One decision per tag, parallel to `Layout::repos[i].tags`.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    pub repos: Vec<Vec<Decision>>,
}

impl Decisions {
    /// Without a policy every tag stays, as with the reference GC.
    pub fn keep_all(layout: &Layout) -> Decisions {
        Decisions {
            repos: layout
                .repos
                .iter()
                .map(|r| vec![Decision::Keep; r.tags.len()])
                .collect(),
        }
    }

    pub fn keeps(&self, repo: usize, tag: usize) -> bool {
        !matches!(
            self.repos.get(repo).and_then(|r| r.get(tag)),
            Some(Decision::Delete { .. })
        )
    }
}
