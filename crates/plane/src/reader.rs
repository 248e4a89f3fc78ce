//! Reading a manifest directory again and again, parsing only what changed.
//!
//! An unchanged file gives the very documents it gave last time (the same `Arc`s). In a
//! changed file, only the documents whose text changed are parsed: the text is split
//! at its `---` lines, and a piece seen in the file's last version gives that
//! version's document. A parsed document identical to its last version (metadata and
//! all) is that version again. So what was derived from a document (validation's
//! memo) is reused. Parsing every file on every reload was most of a reload at 10k
//! Routes. The cost: each file's text is kept (the size of the directory).
use std::{
    collections::HashMap,
    ops::Range,
    path::{Path, PathBuf},
    sync::Arc,
};

use portcullis_api::{Document, ObjectKey, ParseError, parse_documents};

use crate::files::{FileEdit, FileError, Loaded, manifest_files, read_bounded};

/// Reads every manifest under `dir` (or `dir` itself when it is a file), once.
pub fn load(dir: &Path) -> std::io::Result<Loaded> {
    Reader::default().load(dir, |_| {})
}

/// One read ([`Reader::default`]) or a reader kept across reads ([`Reader::by_piece`]).
#[derive(Default)]
pub struct Reader {
    files: HashMap<PathBuf, Parsed>,
    /// Whether a file read for the first time is parsed document by document (so a
    /// later edit parses only its document) or whole (faster, ~20 µs less per
    /// document: a YAML parser per document costs that much to set up).
    by_piece: bool,
}

type Parse = Result<(ObjectKey, Document), ParseError>;

/// One file's text and what it gave, after `prepare`, with each document's key.
struct Parsed {
    file: Arc<Path>,
    text: String,
    documents: Vec<Parse>,
    /// The text's pieces, when it was read piece by piece.
    pieces: Option<Vec<Piece>>,
}

/// One document's text: a range of the file's text, and what it gave (an index into
/// the documents; none for a piece of comments or an empty document).
struct Piece {
    text: Range<usize>,
    document: Option<usize>,
}

/// A document of a changed file: the last version's, or parsed now.
enum Fresh {
    Reused(ObjectKey, Document),
    Parsed(Document),
}

impl Reader {
    /// A reader for reading the same directory again and again.
    pub fn by_piece() -> Self {
        Reader {
            by_piece: true,
            ..Default::default()
        }
    }

    /// Every manifest under `dir` (or `dir` itself when it is a file). `prepare` runs
    /// once on each document parsed now; a reused document is as `prepare` left it,
    /// so it must give the same result for the same document every time.
    pub fn load(
        &mut self,
        dir: &Path,
        mut prepare: impl FnMut(&mut Document),
    ) -> std::io::Result<Loaded> {
        let mut loaded = Loaded::default();
        let files = manifest_files(dir)?;
        let mut previous = std::mem::take(&mut self.files);
        for file in files {
            let text = match read_bounded(&file) {
                Ok(t) => t,
                Err(e) => {
                    loaded.errors.push(FileError {
                        file: file.clone(),
                        error: ParseError {
                            index: 0,
                            key: None,
                            object: None,
                            message: format!("cannot read: {e}"),
                        },
                    });
                    continue;
                }
            };
            let start = loaded.documents.len();
            let (parsed, before) = match previous.remove(&file) {
                Some(last) if last.text == text => (last, None),
                last => {
                    let piece = self.by_piece || last.is_some();
                    let parsed = Parsed::new(&file, text, last.as_ref(), piece, &mut prepare);
                    let before = last.iter().flat_map(keys).cloned().collect();
                    (parsed, Some(before))
                }
            };
            for doc in &parsed.documents {
                match doc {
                    Ok((k, d)) => {
                        loaded
                            .documents
                            .push((parsed.file.clone(), k.clone(), d.clone()))
                    }
                    Err(error) => loaded.errors.push(FileError {
                        file: file.clone(),
                        error: error.clone(),
                    }),
                }
            }
            if let Some(before) = before {
                let after = start..loaded.documents.len();
                loaded.edits.push(FileEdit { before, after });
            }
            self.files.insert(file, parsed);
        }
        for gone in previous.values() {
            let before = keys(gone).cloned().collect();
            let at = loaded.documents.len();
            loaded.edits.push(FileEdit {
                before,
                after: at..at,
            });
        }
        Ok(loaded)
    }
}

impl Parsed {
    /// `text` of `file`, reusing what `last` (its previous version) parsed.
    fn new(
        file: &Path,
        text: String,
        last: Option<&Parsed>,
        piece: bool,
        prepare: &mut impl FnMut(&mut Document),
    ) -> Parsed {
        let pieces = piece.then(|| by_piece(&text, last)).flatten();
        let (found, pieces): (Vec<Result<Fresh, ParseError>>, _) = match pieces {
            Some((found, pieces)) => (found.into_iter().map(Ok).collect(), Some(pieces)),
            None => {
                let docs = parse_documents(&text).into_iter();
                (docs.map(|d| d.map(Fresh::Parsed)).collect(), None)
            }
        };
        // The last version's documents by key: made once, and only when something
        // was parsed now (a reused piece is already the last version's document).
        let mut last_by_key: Option<HashMap<&ObjectKey, &Document>> = None;
        let documents: Vec<Parse> = found
            .into_iter()
            .map(|found| {
                found.map(|f| match f {
                    Fresh::Reused(k, d) => (k, d),
                    Fresh::Parsed(mut d) => {
                        prepare(&mut d);
                        let key = d.key();
                        let last = last_by_key.get_or_insert_with(|| {
                            let docs = last.into_iter().flat_map(|l| l.documents.iter());
                            docs.flatten().map(|(k, d)| (k, d)).collect()
                        });
                        // Identical to its last version: that version, so what was
                        // derived from it is reused.
                        match last.get(&key) {
                            Some(old) if d.identical(old) => (key, (*old).clone()),
                            _ => (key, d),
                        }
                    }
                })
            })
            .collect();
        Parsed {
            file: Arc::from(file),
            text,
            documents,
            pieces,
        }
    }

    /// What each of its pieces gave, by the piece's text.
    fn by_text(&self) -> HashMap<&str, Option<&(ObjectKey, Document)>> {
        let Some(pieces) = &self.pieces else {
            return HashMap::new();
        };
        pieces
            .iter()
            .map(|p| {
                let document = p.document.and_then(|i| self.documents[i].as_ref().ok());
                (&self.text[p.text.clone()], document)
            })
            .collect()
    }
}

/// The documents of `text` piece by piece, a piece that `last` had giving what it gave
/// there. `None` when the text cannot be split (see [`split_documents`]) or a piece
/// does not parse on its own: then the text is parsed whole, so errors read as they
/// always have (a broken YAML stream hides what follows; positions count from the
/// start of the file).
fn by_piece(text: &str, last: Option<&Parsed>) -> Option<(Vec<Fresh>, Vec<Piece>)> {
    let split = split_documents(text)?;
    let seen = last.map(Parsed::by_text).unwrap_or_default();
    let mut found = Vec::new();
    let mut pieces = Vec::with_capacity(split.len());
    let mut at = 0;
    for piece in split {
        let range = at..at + piece.len();
        at += piece.len();
        let fresh = match seen.get(piece) {
            Some(Some((k, d))) => Some(Fresh::Reused(k.clone(), d.clone())),
            Some(None) => None,
            // Comments and blank lines only: no document, and no parser set up for it
            // (a file of a million `---` lines must not cost a million parsers).
            None if blank(piece) => None,
            None => {
                let mut docs = parse_documents(piece);
                match (docs.pop(), docs.is_empty()) {
                    (None, _) => None,
                    (Some(Ok(d)), true) => Some(Fresh::Parsed(d)),
                    _ => return None,
                }
            }
        };
        let document = fresh.map(|f| {
            found.push(f);
            found.len() - 1
        });
        pieces.push(Piece {
            text: range,
            document,
        });
    }
    Some((found, pieces))
}

/// Whether a piece is a marker (or nothing) followed by comments and blank lines only:
/// an empty document, which gives nothing.
fn blank(piece: &str) -> bool {
    let rest = piece.strip_prefix("---").unwrap_or(piece);
    rest.lines().all(|line| {
        let line = line.trim_start_matches([' ', '\t', '\r']);
        line.is_empty() || line.starts_with('#')
    })
}

/// Most pieces a text is split into; a text with more is parsed whole. Bounds the
/// ranges kept per file (a 4 MiB file of `---` lines has a million).
const MAX_PIECES: usize = 100_000;

/// The documents of a multi-document YAML text, each as its own text, when the text
/// can be split without parsing it: a line that starts with `---` followed by a space,
/// a tab or the line's end is a document marker wherever it is (YAML forbids such a
/// line inside any scalar). `None` for texts with directives (`%`) or document-end
/// markers (`...`), whose documents depend on more than their own text.
fn split_documents(text: &str) -> Option<Vec<&str>> {
    let mut pieces = Vec::new();
    let (mut start, mut at) = (0, 0);
    for line in text.split_inclusive('\n') {
        if line.starts_with('%') || line.starts_with("...") {
            return None;
        }
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if marker && at > start {
            pieces.push(&text[start..at]);
            start = at;
            if pieces.len() > MAX_PIECES {
                return None;
            }
        }
        at += line.len();
    }
    if at > start {
        pieces.push(&text[start..at]);
    }
    (pieces.len() <= MAX_PIECES).then_some(pieces)
}

fn keys(parsed: &Parsed) -> impl Iterator<Item = &ObjectKey> {
    parsed.documents.iter().flatten().map(|(k, _)| k)
}

#[cfg(test)]
impl Reader {
    /// Every document held, to tell reused ones by identity.
    pub(crate) fn documents(&self) -> Vec<Document> {
        let docs = self
            .files
            .values()
            .flat_map(|p| p.documents.iter().flatten());
        docs.map(|(_, d)| d.clone()).collect()
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
