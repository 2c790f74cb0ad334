//! What went wrong, as facts: which image, which limit, which state. Everything below the API
//! (domain rules, repositories, stores, the work engine, the services) reports a `Fault`;
//! `crate::error` gives each its HTTP status and Glance's words, once, so a request and a
//! background task that fail for the same reason say the same thing.

use super::image::Status;
use crate::store::StoreError;

pub type Result<T, E = Fault> = std::result::Result<T, E>;

/// Which Glance handler looked the image up: each words its 404 differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The images and image-data controllers.
    Image,
    /// The tags and members controllers (the image is the parent resource).
    Parent,
    /// Deleting the image.
    Delete,
    /// Deleting the image's data from one store.
    StoreDelete,
    /// The image's tasks: a bare 404.
    Bare,
}

/// What a per-image limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Properties,
    Tags,
}

/// Why an image's member list refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOp {
    Create,
    Update,
    Delete,
    List,
    Show,
}

impl MemberOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberOp::Create => "create",
            MemberOp::Update => "update",
            MemberOp::Delete => "delete",
            MemberOp::List => "list",
            MemberOp::Show => "show",
        }
    }
}

#[derive(Debug)]
pub enum Fault {
    /// No such image, or the caller may not know it exists.
    ImageNotFound {
        id: String,
        lookup: Lookup,
    },
    /// A list's `marker` names no image the caller may see.
    MarkerNotFound {
        id: String,
    },
    /// Removing a tag the image does not have.
    TagNotFound {
        image: String,
        tag: String,
    },
    /// An image with this id exists already.
    DuplicateImage {
        id: String,
    },
    /// A policy refusal of an image the caller may not even see.
    Hidden,
    /// A policy rule refused `action`.
    Denied {
        action: String,
    },
    /// A refusal Glance answers as not found (`get_member`), in the policy's words.
    DeniedAsNotFound {
        action: String,
    },
    /// With the new defaults off, only the owner may change an image.
    NotOwner,
    /// Creating an image owned by another project; `legacy`: by the owner check made with the
    /// new defaults off rather than by the policy.
    ForeignOwner {
        owner: Option<String>,
        legacy: bool,
    },
    /// An attribute the caller may not set.
    ReadOnly {
        attribute: String,
    },
    /// A reserved name; `in_parser`: refused where Glance's request parser refuses it.
    Reserved {
        attribute: String,
        in_parser: bool,
    },
    PropertyNameTooLong,
    NotAnImageObject,
    InvalidImageId {
        id: String,
    },
    NegativeValue {
        key: String,
        value: String,
    },
    OutOfRange {
        key: String,
    },
    LimitExceeded {
        what: Counted,
        attempted: usize,
        maximum: i64,
    },
    MemberLimit {
        image: String,
        attempted: i64,
        maximum: i64,
    },
    DuplicateMember {
        image: String,
        member: String,
    },
    NotAMember {
        image: String,
        member: String,
    },
    InvalidMemberStatus,
    /// Members of an image that is not `shared`, or (new defaults off) not the caller's to
    /// manage.
    MembersRefused {
        image: String,
        op: MemberOp,
        not_shared: bool,
    },
    Transition {
        from: Status,
        to: Status,
    },
    /// Data before both formats are set.
    FormatsMissing {
        missing: Vec<&'static str>,
    },
    /// The image changed (its status, or its locations) between reading and writing it.
    ChangedMeanwhile {
        image: String,
    },
    Protected {
        image: String,
    },
    /// The store keeps the data (RBD clones of its snapshot).
    InUse {
        image: String,
        why: String,
    },
    /// Deactivate/reactivate from a status that allows neither.
    ActionInStatus {
        action: String,
        status: Status,
    },
    SizeMismatch {
        expected: String,
        got: u64,
    },
    SizeExceeds {
        expected: String,
        got: u64,
    },
    /// `image_size_cap` exceeded.
    TooLarge,
    /// Text Glance could not store (`no_4byte_params`); `context` prefixes the words as the
    /// Glance handler does ("Could not update image: ...").
    FourByte {
        what: crate::domain::unicode::FourByte,
        context: Option<&'static str>,
    },
    /// The image went away (deleted) while its data was written.
    VanishedDuringUpload {
        image: String,
    },
    /// A deactivated image's data, asked for by someone not an admin.
    DownloadDeactivated,
    /// `?prefer=` stores without multi-store.
    StoreSelectionUnavailable,
    /// A store id that no store has.
    UnknownStore {
        id: String,
    },
    /// The client stopped sending (or its body broke) mid-upload.
    SourceFailed {
        why: String,
    },
    /// The data is not what the image declares (format mismatch, unsafe image).
    Rejected {
        why: String,
    },
    /// A task at work on the image holds its import lock.
    ActiveTask {
        image: String,
    },
    /// Another operation took the image's import lock meanwhile.
    ImportLocked {
        image: String,
    },
    /// A location URL refused by `[import_filtering_opts]`.
    LocationFiltered {
        url: String,
    },
    /// No configured store holds this location.
    NoStoreFor {
        url: String,
    },
    /// A location whose data cannot be read.
    BadLocation {
        url: String,
        why: String,
    },
    /// An `import_from` refused when the task was created (Glance's reason).
    ImportFromRefused {
        why: String,
    },
    /// Another node took the work for dead and runs it now.
    TakenOver,
    Store(StoreError),
    DatabaseUnavailable,
    Database,
    /// A deadlock or lock wait that did not clear after retries.
    DatabaseBusy,
    /// A refusal about the metadata definition catalog.
    Metadef(Metadef),
    Internal {
        what: String,
    },
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Full
            | StoreError::WriteDenied
            | StoreError::NotFound(_)
            | StoreError::InUse(_)
            | StoreError::ReadOnly => {}
            StoreError::Timeout(_) => tracing::error!(error = %e, "store call timed out"),
            StoreError::Unavailable(_) => tracing::error!(error = %e, "store unavailable"),
            _ => tracing::error!(error = %e, "store failure"),
        }
        Fault::Store(e)
    }
}

impl From<sqlx::Error> for Fault {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // The database is down or unreachable: the client may retry; the pool reconnects.
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Fault::DatabaseUnavailable
            }
            sqlx::Error::Database(db) if is_lost_connection(db.as_ref()) => {
                tracing::warn!(error = %e, "database connection lost");
                Fault::DatabaseUnavailable
            }
            sqlx::Error::Database(db) if is_busy(db.as_ref()) => {
                tracing::warn!(error = %e, "database busy");
                Fault::DatabaseBusy
            }
            _ => {
                tracing::error!(error = %e, "database error");
                Fault::Database
            }
        }
    }
}

fn is_lost_connection(db: &dyn sqlx::error::DatabaseError) -> bool {
    // MySQL: 2006 server has gone away, 2013 lost connection, 1053 shutdown in progress,
    // 1927 connection killed. SQLite: "database is locked" is retryable too.
    matches!(
        db.code().as_deref(),
        Some("2006" | "2013" | "1053" | "1927" | "08S01" | "70100" | "5")
    ) || db.message().contains("database is locked")
}

/// A deadlock victim (40001) that retries did not clear, or a lock wait timeout (1205).
fn is_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(
        db.code().as_deref(),
        Some("40001" | "1213" | "1205" | "HY000")
    ) && (db.message().contains("Deadlock") || db.message().contains("Lock wait timeout"))
}

/// What a namespace holds by name, as Glance's messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadefKind {
    Object,
    Property,
    Tag,
}

/// Refusals about metadata definitions (namespaces and what they hold).
#[derive(Debug, Clone, PartialEq)]
pub enum Metadef {
    /// No namespace of that name (as the namespace and object routes look it up).
    NamespaceMissing {
        name: String,
    },
    /// Missing or not visible, as most routes say it.
    NamespaceNotFound {
        name: String,
    },
    /// Not visible to the caller, where Glance answers a bare 404.
    NamespaceHidden,
    /// A listing's marker names a namespace the caller cannot see.
    MarkerHidden {
        name: String,
    },
    NamespaceExists {
        name: String,
    },
    NamespaceRenameTaken {
        name: String,
    },
    NamespaceProtected {
        name: String,
    },
    EntryNotFound {
        kind: MetadefKind,
        name: String,
    },
    EntryExists {
        kind: MetadefKind,
        name: String,
        namespace: String,
    },
    EntryRenameTaken {
        kind: MetadefKind,
        name: String,
        namespace: String,
    },
    EntryProtected {
        kind: MetadefKind,
        name: String,
    },
    ResourceTypeNotFound {
        name: String,
    },
    AssociationNotFound {
        resource_type: String,
        namespace: String,
    },
    AssociationExists {
        resource_type: String,
        namespace: String,
    },
    AssociationProtected {
        resource_type: String,
    },
    AssociationToDeleteNotFound {
        resource_type: String,
    },
    PrefixMismatch {
        property: String,
        prefix: Option<String>,
    },
}

impl From<Metadef> for Fault {
    fn from(m: Metadef) -> Self {
        Fault::Metadef(m)
    }
}
