//! The one walk of the manifest graph, from roots through index children and OCI referrers to
//! every manifest and blob they need: mark, integrity and trash restore all walk with it, each
//! over its own view of the graph.

use std::borrow::Cow;

/// What a manifest holds, borrowed from the view where it can be.
pub struct Node<'a, Id: Clone> {
    /// Its config, layers and other blobs.
    pub blobs: Cow<'a, [Id]>,
    /// Its index children.
    pub children: Cow<'a, [Id]>,
}

/// A view of the manifest graph: the model's catalog (by ref) for mark and integrity, or the
/// trash and the store together (by digest) for restore.
pub trait Graph {
    type Id: Copy;
    /// The blobs and the child manifests of manifest `id`; `None` when it cannot be read.
    fn manifest(&self, id: Self::Id) -> Option<Node<'_, Self::Id>>;
    /// The manifests whose `subject` is `id`: they are needed as long as it is.
    fn referrers(&self, id: Self::Id) -> Cow<'_, [Self::Id]>;
}

/// What a walk records as it goes.
pub trait Visit<Id> {
    /// A manifest reached; false when it was reached before (the walk goes no further there).
    fn manifest(&mut self, id: Id) -> bool;
    /// A blob a reached manifest needs (its config, a layer).
    fn blob(&mut self, id: Id);
    /// A reached manifest that could not be read: what it needs is unknown.
    fn unreadable(&mut self, id: Id);
}

/// Walks from `roots`: every manifest reached, its blobs, its children and its referrers.
pub fn walk<G: Graph, V: Visit<G::Id>>(graph: &G, roots: Vec<G::Id>, visit: &mut V) {
    let mut stack = roots;
    while let Some(id) = stack.pop() {
        if !visit.manifest(id) {
            continue;
        }
        match graph.manifest(id) {
            Some(node) => {
                for &b in node.blobs.iter() {
                    visit.blob(b);
                }
                stack.extend_from_slice(&node.children);
            }
            None => visit.unreadable(id),
        }
        stack.extend_from_slice(&graph.referrers(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    /// 1 -> blobs 10, 11, children 2, 3; 2 -> blob 12; 3 unreadable; 4 refers to 1 (blob 13).
    struct G(HashMap<u32, (Vec<u32>, Vec<u32>)>);

    impl Graph for G {
        type Id = u32;
        fn manifest(&self, id: u32) -> Option<Node<'_, u32>> {
            self.0.get(&id).map(|(b, c)| Node {
                blobs: Cow::Borrowed(&b[..]),
                children: Cow::Borrowed(&c[..]),
            })
        }
        fn referrers(&self, id: u32) -> Cow<'_, [u32]> {
            Cow::Owned(if id == 1 { vec![4] } else { vec![] })
        }
    }

    #[derive(Default)]
    struct Seen(BTreeSet<u32>, BTreeSet<u32>, Vec<u32>);

    impl Visit<u32> for Seen {
        fn manifest(&mut self, id: u32) -> bool {
            self.0.insert(id)
        }
        fn blob(&mut self, id: u32) {
            self.1.insert(id);
        }
        fn unreadable(&mut self, id: u32) {
            self.2.push(id);
        }
    }

    #[test]
    fn reaches_children_referrers_and_blobs_once() {
        let g = G(HashMap::from([
            (1, (vec![10, 11], vec![2, 3, 2])),
            (2, (vec![12], vec![])),
            (4, (vec![13], vec![1])),
        ]));
        let mut s = Seen::default();
        walk(&g, vec![1], &mut s);
        assert_eq!(s.0, BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(s.1, BTreeSet::from([10, 11, 12, 13]));
        assert_eq!(s.2, vec![3]);
        let mut s = Seen::default();
        walk(&g, vec![2], &mut s);
        assert_eq!(s.0, BTreeSet::from([2]), "referrers point up, not down");
    }
}
