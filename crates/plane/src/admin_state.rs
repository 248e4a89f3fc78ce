//! What the admin endpoints and the web console read: the served snapshot, the object
//! board, the model `explain` answers from. Its own module so the console and the admin
//! router both depend on it and not on each other.
use std::sync::Arc;

use parking_lot::RwLock;
use portcullis_api::Model;
use portcullis_xds::Cache;
use prometheus::Registry;

use crate::file_source::Board;

#[derive(Clone)]
pub struct AdminState {
    pub cache: Cache,
    pub registry: Registry,
    pub board: Arc<RwLock<Board>>,
    /// The model last published (what `explain` answers from).
    pub model: Arc<RwLock<Arc<Model>>>,
    /// Set once a snapshot is being served (from the state file or the source).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}
