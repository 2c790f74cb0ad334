//! Glance's tasks: asynchronous work a user asked for (`POST /v2/tasks`), its status
//! (`pending` → `processing` → `success` | `failure`), its `result` or `message`, and when it
//! expires.

use chrono::NaiveDateTime;
use serde_json::Value;

pub const PENDING: &str = "pending";
pub const PROCESSING: &str = "processing";
pub const SUCCESS: &str = "success";
pub const FAILURE: &str = "failure";
pub const STATUSES: [&str; 4] = [PENDING, PROCESSING, SUCCESS, FAILURE];

/// The legacy import task: fetch `input.import_from` into a new image.
pub const IMPORT: &str = "import";
/// The types the task schema allows.
pub const TYPES: [&str; 3] = [IMPORT, "api_image_import", "location_import"];

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    /// `import`, `api_image_import`, `location_import`.
    pub kind: String,
    /// `pending`, `processing`, `success`, `failure`.
    pub status: String,
    pub owner: String,
    pub expires_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub image_id: Option<String>,
    pub request_id: Option<String>,
    pub user_id: Option<String>,
    /// From `task_info`; None in listings (Glance's task stubs leave them out).
    pub input: Option<Value>,
    pub result: Option<Value>,
    pub message: Option<String>,
}
