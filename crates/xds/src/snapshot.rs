//! Immutable, content-versioned sets of xDS resources.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::bytes::Bytes;

use crate::hash::Fnv64;

/// One named resource. Its type URL is `body.type_url`. `Debug` shows the name, type
/// and size, never the body (SDS secrets carry private keys).
#[derive(Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub body: Any,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.name)
            .field("type_url", &self.body.type_url)
            .field("bytes", &self.body.value.len())
            .finish()
    }
}

impl Resource {
    pub fn new(name: impl Into<String>, body: Any) -> Self {
        Self {
            name: name.into(),
            body,
        }
    }

    pub fn type_url(&self) -> &str {
        &self.body.type_url
    }
}

/// Error decoding a persisted snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("malformed snapshot encoding: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("resource {name:?} in snapshot has no body")]
    MissingBody { name: String },
}

/// A resource handed over already encoded: its `Any.value` as shared bytes. When the
/// previous snapshot ([`Snapshot::reusing_encoded`]) took the very same bytes (the same
/// allocation) under the same type and name, its entry is kept as it is, without
/// comparing, copying or hashing them; other bytes are taken as a [`Resource`] would be.
#[derive(Clone, Debug)]
pub struct EncodedResource {
    /// One of a few well-known types: not copied per resource.
    pub type_url: &'static str,
    /// Shared with whoever handed it over: taking it costs no copy.
    pub name: Arc<str>,
    pub value: Bytes,
}

/// What a snapshot is built from.
enum Input {
    Resource(Resource),
    Encoded(EncodedResource),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Shared with the snapshots that follow while it is unchanged.
    pub(crate) resource: Arc<Resource>,
    pub(crate) version: String,
    /// `resource.body` encoded, once: every response that carries this resource, on
    /// every stream, shares these bytes.
    pub(crate) encoded: Bytes,
    /// The bytes an [`EncodedResource`] handed over for it, to know them again.
    source: Option<Bytes>,
}

/// The same allocation: equal bytes, known without reading them.
fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

impl Entry {
    /// Whether this entry was made from these very bytes (an [`EncodedResource`]'s).
    fn took(&self, value: &Bytes) -> bool {
        self.source.as_ref().is_some_and(|s| same_bytes(s, value))
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TypeSet {
    pub(crate) version: String,
    pub(crate) entries: BTreeMap<String, Entry>,
    /// Every entry's encoding as `resources` fields, built the first time a response
    /// carries the whole type ([`Snapshot::all_fields`]): a second copy of the type's
    /// bytes, in exchange for no per-stream list or copy.
    all: OnceLock<Bytes>,
    /// The same for delta responses (each with its name and version).
    all_delta: OnceLock<Bytes>,
    /// The last name set found to select every entry ([`Snapshot::selects_all`]).
    selected_all: SelectedAll,
}

/// A name set known to select every entry of a type: every Envoy of a fleet asks for
/// the same 2,000 clusters by name (one interned set), and checking that by looking up
/// each name was ~10% of the server's CPU in a connection storm. Weak, so a set that
/// `Arc::make_mut` changes in place (a Delta update) no longer matches.
#[derive(Debug, Default)]
struct SelectedAll(parking_lot::Mutex<std::sync::Weak<BTreeSet<String>>>);

impl Clone for SelectedAll {
    fn clone(&self) -> Self {
        SelectedAll(parking_lot::Mutex::new(self.0.lock().clone()))
    }
}

impl Input {
    fn type_url(&self) -> &str {
        match self {
            Input::Resource(r) => &r.body.type_url,
            Input::Encoded(e) => e.type_url,
        }
    }

    fn name(&self) -> &str {
        match self {
            Input::Resource(r) => &r.name,
            Input::Encoded(e) => &e.name,
        }
    }

    /// Whether `kept` (an entry under the same type and name) holds this input's body
    /// as it is: encoded bytes known by their allocation, a resource compared.
    fn is_held_by(&self, kept: &Entry) -> bool {
        match self {
            Input::Encoded(e) => kept.took(&e.value),
            Input::Resource(r) => kept.resource.body == r.body,
        }
    }
}

impl TypeSet {
    /// The type's entries from `inputs` (on a duplicate name the last one wins), each
    /// taking `before`'s version and encoding where it holds the same body.
    fn build(inputs: Vec<Input>, before: Option<&TypeSet>) -> TypeSet {
        let before = |name: &str| before?.entries.get(name);
        let mut entries = BTreeMap::new();
        for input in inputs {
            // The input's own name becomes the key where it is not moved into a new
            // resource: one copy fewer per kept entry.
            let (name, entry) = match input {
                Input::Encoded(e) => match before(&e.name) {
                    Some(kept) if kept.took(&e.value) => (e.name.to_string(), kept.clone()),
                    _ => {
                        let body = Any {
                            type_url: e.type_url.to_owned(),
                            value: e.value.to_vec(),
                        };
                        let mut entry = entry_for(Resource::new(&*e.name, body), before);
                        entry.source = Some(e.value);
                        (entry.resource.name.clone(), entry)
                    }
                },
                Input::Resource(resource) => {
                    let entry = entry_for(resource, before);
                    (entry.resource.name.clone(), entry)
                }
            };
            entries.insert(name, entry);
        }
        TypeSet {
            version: type_version_of(
                entries
                    .iter()
                    .map(|(n, e)| (n.as_str(), e.version.as_str())),
            ),
            entries,
            all: OnceLock::new(),
            all_delta: OnceLock::new(),
            selected_all: SelectedAll::default(),
        }
    }

    /// Whether `inputs`, in order, are this set's entries one for one, each the same
    /// body: encoded ones known by their bytes' allocation, others compared. Inputs out
    /// of name order, repeated or missing are not, and the set is built anew.
    fn holds_exactly(&self, inputs: &[Input]) -> bool {
        inputs.len() == self.entries.len()
            && inputs
                .iter()
                .zip(&self.entries)
                .all(|(input, (name, kept))| input.name() == name && input.is_held_by(kept))
    }
}

/// `resource`'s entry: `before`'s version and encoding when it held the same body
/// (comparing is far cheaper than hashing and encoding a 4 MB route table again).
fn entry_for<'p>(resource: Resource, before: impl Fn(&str) -> Option<&'p Entry>) -> Entry {
    match before(&resource.name) {
        Some(kept) if kept.resource.body == resource.body => Entry {
            source: None,
            ..kept.clone()
        },
        _ => Entry {
            version: resource_version(&resource.body),
            encoded: Bytes::from(resource.body.encode_to_vec()),
            resource: Arc::new(resource),
            source: None,
        },
    }
}

/// Immutable set of resources grouped by type URL.
///
/// Versions are pure functions of content (FNV-1a 64 over the encoded
/// bytes), so identical content yields identical versions across process
/// restarts; that lets a reconnecting Envoy skip re-downloading everything.
#[derive(Clone, Debug)]
pub struct Snapshot {
    version: String,
    types: BTreeMap<String, Arc<TypeSet>>,
    len: usize,
}

/// Version reported for a type the snapshot has no resources of. It is the
/// version an empty type would hash to, so it is non-empty (an empty
/// `version_info` means "nothing yet" in a request) and stable.
pub(crate) fn empty_type_version() -> String {
    type_version_of(std::iter::empty())
}

fn resource_version(body: &Any) -> String {
    let mut h = Fnv64::new();
    h.write_field(body.type_url.as_bytes());
    h.write_field(&body.value);
    h.hex()
}

fn type_version_of<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Fnv64::new();
    for (name, version) in pairs {
        h.write_field(name.as_bytes());
        h.write_field(version.as_bytes());
    }
    h.hex()
}

impl Snapshot {
    /// Build a snapshot; on duplicate (type URL, name) the last one wins.
    pub fn new(resources: impl IntoIterator<Item = Resource>) -> Snapshot {
        Self::build(resources.into_iter().map(Input::Resource), None)
    }

    /// [`Snapshot::new`] from `resources` and already encoded ones. With `previous`,
    /// each resource whose body is byte-for-byte the one `previous` holds under the same
    /// type and name takes its version and encoding (comparing is far cheaper than
    /// hashing and encoding a 4 MB route table again), and an [`EncodedResource`] whose
    /// bytes `previous` took (the same allocation) keeps its entry without reading them.
    pub fn reusing_encoded(
        resources: impl IntoIterator<Item = Resource>,
        encoded: impl IntoIterator<Item = EncodedResource>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let inputs = resources
            .into_iter()
            .map(Input::Resource)
            .chain(encoded.into_iter().map(Input::Encoded));
        Self::build(inputs, previous)
    }

    fn build(inputs: impl Iterator<Item = Input>, previous: Option<&Snapshot>) -> Snapshot {
        // Grouped by type first, in the order given: a type whose every input is what
        // `previous` holds (after an edit to one Route: every cluster and endpoint) is
        // shared whole, with its version and its blocks, instead of rebuilt entry by
        // entry (4k lookups and copies per edit at 10k Routes).
        let mut groups: Vec<(String, Vec<Input>)> = Vec::new();
        for input in inputs {
            let type_url = input.type_url();
            // Inputs come grouped by type: the last group is almost always the one.
            match groups.iter_mut().rev().find(|(t, _)| t == type_url) {
                Some((_, group)) => group.push(input),
                None => groups.push((type_url.to_owned(), vec![input])),
            }
        }
        let mut types: BTreeMap<String, Arc<TypeSet>> = BTreeMap::new();
        for (type_url, group) in groups {
            let before = previous.and_then(|p| p.types.get(&type_url));
            let set = match before {
                Some(set) if set.holds_exactly(&group) => Arc::clone(set),
                _ => Arc::new(TypeSet::build(group, before.map(|s| &**s))),
            };
            types.insert(type_url, set);
        }
        let mut snapshot_hash = Fnv64::new();
        let mut len = 0;
        // BTreeMap iteration is sorted, so the hashes do not depend on insertion order.
        for (type_url, set) in &types {
            len += set.entries.len();
            snapshot_hash.write_field(type_url.as_bytes());
            snapshot_hash.write_field(set.version.as_bytes());
        }
        Snapshot {
            version: snapshot_hash.hex(),
            types,
            len,
        }
    }

    pub fn empty() -> Snapshot {
        Snapshot::new(std::iter::empty())
    }

    /// Hash over all type versions.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Version of one type, `None` if the snapshot has no resources of it.
    pub fn type_version(&self, type_url: &str) -> Option<&str> {
        self.types.get(type_url).map(|t| t.version.as_str())
    }

    /// Resources of one type, sorted by name.
    pub fn resources(&self, type_url: &str) -> impl Iterator<Item = &Resource> {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.entries.values().map(|e| &*e.resource))
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.entry(type_url, name).map(|e| &*e.resource)
    }

    /// Content version of one resource.
    pub fn resource_version(&self, type_url: &str, name: &str) -> Option<&str> {
        self.entry(type_url, name).map(|e| e.version.as_str())
    }

    /// Type URLs present, sorted.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    /// Number of resources of one type.
    pub fn type_len(&self, type_url: &str) -> usize {
        self.types.get(type_url).map_or(0, |t| t.entries.len())
    }

    /// Total number of resources.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn entry(&self, type_url: &str, name: &str) -> Option<&Entry> {
        self.types.get(type_url)?.entries.get(name)
    }

    pub(crate) fn entries(&self, type_url: &str) -> impl Iterator<Item = &Entry> {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.entries.values())
    }

    /// Whether `names` is the set last found to select every resource of `type_url`
    /// (see [`Snapshot::remember_selects_all`]).
    pub(crate) fn selects_all(&self, type_url: &str, names: &Arc<BTreeSet<String>>) -> bool {
        self.types.get(type_url).is_some_and(|t| {
            t.selected_all
                .0
                .lock()
                .upgrade()
                .is_some_and(|known| Arc::ptr_eq(&known, names))
        })
    }

    /// Notes that `names` selects every resource of `type_url` (its caller counted).
    pub(crate) fn remember_selects_all(&self, type_url: &str, names: &Arc<BTreeSet<String>>) {
        if let Some(t) = self.types.get(type_url) {
            *t.selected_all.0.lock() = Arc::downgrade(names);
        }
    }

    /// Every resource of a type as one block of `DiscoveryResponse.resources` fields,
    /// shared by every response that carries them all; `None` if there are none.
    pub(crate) fn all_fields(&self, type_url: &str) -> Option<(Bytes, usize)> {
        self.block(
            type_url,
            |set| &set.all,
            |entries| crate::wire::resource_fields(entries.values().map(|e| &e.encoded)),
        )
    }

    /// As [`Snapshot::all_fields`], as `DeltaDiscoveryResponse.resources` fields.
    pub(crate) fn all_delta_fields(&self, type_url: &str) -> Option<(Bytes, usize)> {
        self.block(
            type_url,
            |set| &set.all_delta,
            |entries| {
                crate::wire::delta_resource_fields(
                    entries
                        .values()
                        .map(|e| (e.resource.name.as_str(), e.version.as_str(), &e.encoded)),
                )
            },
        )
    }

    /// A type's block in `cell`, built by `build` the first time; with its count.
    fn block(
        &self,
        type_url: &str,
        cell: impl Fn(&TypeSet) -> &OnceLock<Bytes>,
        build: impl FnOnce(&BTreeMap<String, Entry>) -> Bytes,
    ) -> Option<(Bytes, usize)> {
        let set = self.types.get(type_url).filter(|t| !t.entries.is_empty())?;
        let fields = cell(set).get_or_init(|| build(&set.entries));
        Some((fields.clone(), set.entries.len()))
    }

    /// Type version, with missing types mapped to [`empty_type_version`].
    pub(crate) fn effective_type_version(&self, type_url: &str) -> String {
        self.type_version(type_url)
            .map_or_else(empty_type_version, str::to_owned)
    }

    /// Serialize for the state file.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let proto = SnapshotProto {
            resources: self
                .types
                .values()
                .flat_map(|t| t.entries.values())
                .map(|e| ResourceProto {
                    name: e.resource.name.clone(),
                    body: Some(e.resource.body.clone()),
                })
                .collect(),
        };
        proto.encode_to_vec()
    }

    /// Inverse of [`Snapshot::encode_to_vec`]; versions are recomputed.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let proto = SnapshotProto::decode(bytes)?;
        let resources = proto
            .resources
            .into_iter()
            .map(|r| match r.body {
                Some(body) => Ok(Resource { name: r.name, body }),
                None => Err(SnapshotError::MissingBody { name: r.name }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot::new(resources))
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::empty()
    }
}

/// Wire format of the state file. Hand-derived so no build script is needed.
#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotProto {
    #[prost(message, repeated, tag = "1")]
    resources: Vec<ResourceProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    body: Option<Any>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(type_url: &str, name: &str, value: &[u8]) -> Resource {
        Resource::new(
            name,
            Any {
                type_url: type_url.into(),
                value: value.to_vec(),
            },
        )
    }

    #[test]
    fn encoded_resources_are_known_by_their_bytes() {
        let encoded = |name: &str, value: &Bytes| EncodedResource {
            type_url: "t/a",
            name: name.into(),
            value: value.clone(),
        };
        let (one, two) = (Bytes::from_static(b"one"), Bytes::from_static(b"two"));
        let first = Snapshot::reusing_encoded([], [encoded("x", &one), encoded("y", &two)], None);
        let entry = |s: &Snapshot, n: &str| s.entry("t/a", n).unwrap().clone();
        // The same allocation: the entry is kept whole.
        let kept = Snapshot::reusing_encoded([], [encoded("x", &one)], Some(&first));
        assert!(Arc::ptr_eq(
            &entry(&kept, "x").resource,
            &entry(&first, "x").resource
        ));
        // Equal bytes elsewhere: compared, then the kept entry's body is shared; the
        // new bytes are what is known next time.
        let copy = Bytes::copy_from_slice(b"one");
        let compared = Snapshot::reusing_encoded([], [encoded("x", &copy)], Some(&first));
        assert!(Arc::ptr_eq(
            &entry(&compared, "x").resource,
            &entry(&first, "x").resource
        ));
        assert_eq!(entry(&compared, "x").version, entry(&first, "x").version);
        let next = Snapshot::reusing_encoded([], [encoded("x", &copy)], Some(&compared));
        assert!(same_bytes(
            entry(&next, "x").source.as_ref().unwrap(),
            &copy
        ));
        // Other bytes under the name: a new version; and the same bytes under another
        // name are not taken for that name's.
        let changed =
            Snapshot::reusing_encoded([], [encoded("x", &two), encoded("z", &one)], Some(&first));
        assert_ne!(entry(&changed, "x").version, entry(&first, "x").version);
        assert_eq!(entry(&changed, "x").resource.body.value, b"two");
        assert_eq!(entry(&changed, "z").resource.name, "z");
        // Built without a previous snapshot, it is what a `Resource` of those bytes gives.
        let plain = Snapshot::new([Resource::new(
            "x",
            Any {
                type_url: "t/a".into(),
                value: b"one".to_vec(),
            },
        )]);
        assert_eq!(entry(&plain, "x").version, entry(&first, "x").version);
        assert_eq!(entry(&plain, "x").encoded, entry(&first, "x").encoded);
    }

    #[test]
    fn reusing_shares_unchanged_encodings_and_versions_what_changed() {
        let before = Snapshot::new([res("t/a", "x", b"1"), res("t/a", "y", b"2")]);
        let after = Snapshot::reusing_encoded(
            [
                res("t/a", "x", b"1"),
                res("t/a", "y", b"changed"),
                res("t/b", "z", b"3"),
            ],
            [],
            Some(&before),
        );
        let fresh = Snapshot::new([
            res("t/a", "x", b"1"),
            res("t/a", "y", b"changed"),
            res("t/b", "z", b"3"),
        ]);
        // The same versions as a snapshot built from nothing.
        assert_eq!(after.version(), fresh.version());
        assert_eq!(after.type_version("t/a"), fresh.type_version("t/a"));
        let entry = |s: &Snapshot, n: &str| s.types["t/a"].entries[n].clone();
        // Unchanged: the very same encoded bytes, not a copy.
        assert_eq!(
            entry(&after, "x").encoded.as_ptr(),
            entry(&before, "x").encoded.as_ptr()
        );
        // Changed: versioned and encoded anew.
        assert_ne!(entry(&after, "y").version, entry(&before, "y").version);
        assert_eq!(entry(&after, "y").encoded, entry(&fresh, "y").encoded);
    }

    #[test]
    fn a_type_given_again_unchanged_is_shared_whole_and_any_difference_rebuilds_it() {
        let bytes: Vec<Bytes> = (0..4).map(|i| Bytes::from(vec![i as u8; 8])).collect();
        let encoded = |names: &[&str], values: &[&Bytes]| -> Vec<EncodedResource> {
            names
                .iter()
                .zip(values)
                .map(|(n, v)| EncodedResource {
                    type_url: "t/e",
                    name: (*n).into(),
                    value: (*v).clone(),
                })
                .collect()
        };
        let all = [&bytes[0], &bytes[1], &bytes[2]];
        let first = Snapshot::reusing_encoded(
            [res("t/r", "r", b"1")],
            encoded(&["a", "b", "c"], &all),
            None,
        );
        let block = first.all_fields("t/e").unwrap().0;
        let same = Snapshot::reusing_encoded(
            [res("t/r", "r", b"2")],
            encoded(&["a", "b", "c"], &all),
            Some(&first),
        );
        // The unchanged type is the same set, its block built once; the other is new.
        assert!(Arc::ptr_eq(&same.types["t/e"], &first.types["t/e"]));
        assert_eq!(same.all_fields("t/e").unwrap().0.as_ptr(), block.as_ptr());
        assert!(!Arc::ptr_eq(&same.types["t/r"], &first.types["t/r"]));
        // Any difference builds the type anew, and every result is what a snapshot
        // built from nothing holds: one body changed (even to equal bytes elsewhere),
        // one missing, one more, a name repeated (the last wins), another order.
        let copy = Bytes::copy_from_slice(&bytes[1]);
        let cases: Vec<Vec<EncodedResource>> = vec![
            encoded(&["a", "b", "c"], &[&bytes[0], &bytes[3], &bytes[2]]),
            encoded(&["a", "b", "c"], &[&bytes[0], &copy, &bytes[2]]),
            encoded(&["a", "c"], &[&bytes[0], &bytes[2]]),
            encoded(
                &["a", "b", "c", "d"],
                &[&bytes[0], &bytes[1], &bytes[2], &bytes[3]],
            ),
            encoded(
                &["a", "b", "b", "c"],
                &[&bytes[0], &bytes[3], &bytes[1], &bytes[2]],
            ),
            encoded(&["c", "b", "a"], &[&bytes[2], &bytes[1], &bytes[0]]),
            encoded(&["a", "b", "b"], &[&bytes[0], &bytes[1], &bytes[2]]),
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let fresh = Snapshot::reusing_encoded([], case.clone(), None);
            let next = Snapshot::reusing_encoded([], case, Some(&first));
            let blocks = |s: &Snapshot| s.all_fields("t/e").map(|(b, n)| (b.to_vec(), n));
            assert_eq!(next.version(), fresh.version(), "case {i}");
            assert_eq!(blocks(&next), blocks(&fresh), "case {i}");
            assert_eq!(next.len(), fresh.len(), "case {i}");
            // Out of name order, the same entries are built anew too (not worth a sort).
            assert!(
                !Arc::ptr_eq(&next.types["t/e"], &first.types["t/e"]),
                "case {i}"
            );
        }
    }

    #[test]
    fn versions_independent_of_insertion_order() {
        let a = vec![
            res("t/a", "x", b"1"),
            res("t/a", "y", b"2"),
            res("t/b", "z", b"3"),
        ];
        let mut b = a.clone();
        b.reverse();
        let (sa, sb) = (Snapshot::new(a), Snapshot::new(b));
        assert_eq!(sa.version(), sb.version());
        assert_eq!(sa.type_version("t/a"), sb.type_version("t/a"));
        assert_eq!(sa.len(), 3);
    }

    #[test]
    fn versions_are_stable_constants() {
        // Pin the hash so an accidental algorithm change (which would make
        // every Envoy re-download everything after an upgrade) is noticed.
        let s = Snapshot::new([res("t/a", "x", b"1")]);
        assert_eq!(s.version().len(), 16);
        assert_eq!(s.version(), "24b709fc09674b65");
        assert_eq!(empty_type_version(), Snapshot::empty().version());
    }

    #[test]
    fn content_change_changes_only_that_type() {
        let s1 = Snapshot::new([res("t/a", "x", b"1"), res("t/b", "y", b"2")]);
        let s2 = Snapshot::new([res("t/a", "x", b"changed"), res("t/b", "y", b"2")]);
        assert_ne!(s1.version(), s2.version());
        assert_ne!(s1.type_version("t/a"), s2.type_version("t/a"));
        assert_eq!(s1.type_version("t/b"), s2.type_version("t/b"));
        assert_ne!(
            s1.resource_version("t/a", "x"),
            s2.resource_version("t/a", "x")
        );
    }

    #[test]
    fn last_duplicate_wins_and_sorted() {
        let s = Snapshot::new([
            res("t/a", "b", b"1"),
            res("t/a", "a", b"1"),
            res("t/a", "b", b"2"),
        ]);
        let names: Vec<_> = s.resources("t/a").map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.get("t/a", "b").unwrap().body.value, b"2");
        assert_eq!(s.len(), 2);
        assert_eq!(s.type_version("t/missing"), None);
        assert_eq!(s.resources("t/missing").count(), 0);
    }

    #[test]
    fn encode_decode_roundtrip() {
        let s = Snapshot::new([res("t/a", "x", b"1"), res("t/b", "y", &[0, 255, 7])]);
        let d = Snapshot::decode(&s.encode_to_vec()).unwrap();
        assert_eq!(d.version(), s.version());
        assert_eq!(d.get("t/b", "y"), s.get("t/b", "y"));
        assert_eq!(d.len(), 2);
        assert!(Snapshot::decode(&[0xff, 0xff]).is_err());
    }
}
