//! The one error type of the service, mapped once to Glance-style (webob) error responses.
//!
//! Handlers return `Error`; its `IntoResponse` leaves the explanation in a response extension and
//! the `render` middleware, which sees the request's `Accept`, writes the body the way webob
//! renders an `HTTPException`: HTML, JSON or plain text.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use crate::domain::fault::Fault;
use crate::domain::fault::{Counted, Lookup, MemberOp};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{UNAUTHORIZED}")]
    Unauthorized { www_authenticate: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{msg}")]
    UnsupportedMediaType {
        msg: String,
        accept_patch: Option<&'static str>,
    },
    #[error("{0}")]
    RangeNotSatisfiable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// An error Glance raises with its message as webob's `detail` (a positional argument)
    /// rather than as the `explanation`: the body shows the status's standard explanation
    /// first, then the message.
    #[error("{0}")]
    Detail(Box<Error>),
    /// A fact from below the API; `refusal` gives its status and words.
    #[error("{}", refusal(.0))]
    Fault(Fault),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Detail(e) => e.status(),
            Error::Fault(f) => refusal(f).status(),
        }
    }

    /// This error as Glance raises it: message as webob's `detail` (see `Error::Detail`).
    pub fn as_detail(self) -> Error {
        Error::Detail(Box::new(self))
    }

    /// The fact this error carries, if it is one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Error::Fault(f) => Some(f),
            _ => None,
        }
    }
}

impl From<crate::domain::fault::Metadef> for Error {
    fn from(m: crate::domain::fault::Metadef) -> Self {
        Error::Fault(Fault::Metadef(m))
    }
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Self {
        Error::Fault(f)
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Fault(e.into())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Fault(e.into())
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", refusal(self))
    }
}

/// A fact as Glance answers it: its status and its words, written here once.
pub fn refusal(f: &Fault) -> Error {
    use Fault as F;
    let limit = |what: &str, attempted: &dyn std::fmt::Display, maximum: i64| {
        format!(
            "The limit has been exceeded on the number of allowed image {what}. Attempted: {attempted}, Maximum: {maximum}"
        )
    };
    match f {
        F::ImageNotFound { id, lookup } => Error::NotFound(match lookup {
            Lookup::Image => format!("No image found with ID {id}"),
            Lookup::Parent => format!("Image {id} not found."),
            Lookup::Delete => format!("Failed to find image {id} to delete"),
            Lookup::StoreDelete => format!("Failed to find image {id}"),
            Lookup::Bare => String::new(),
        }),
        F::MarkerNotFound { id } => Error::BadRequest(format!("No image found with ID {id}")),
        F::DuplicateImage { id } => {
            Error::Conflict(format!("Image with identifier {id} already exists!"))
        }
        F::Hidden | F::TagNotFound { .. } => Error::NotFound(String::new()),
        F::Denied { action } => Error::Forbidden(format!(
            "You are not authorized to complete {action} action."
        )),
        F::DeniedAsNotFound { action } => Error::NotFound(format!(
            "You are not authorized to complete {action} action."
        )),
        F::NotOwner => Error::Forbidden("You do not own this image".into()),
        F::ForeignOwner { owner, legacy } => {
            let owner = owner.as_deref().unwrap_or("None");
            if *legacy {
                Error::Forbidden(format!(
                    "You are not permitted to create images owned by '{owner}'."
                ))
            } else {
                Error::Forbidden(format!(
                    "You are not permitted to create images owned by '{owner}'"
                ))
                .as_detail()
            }
        }
        F::ReadOnly { attribute } => {
            Error::Forbidden(format!("Attribute '{attribute}' is read-only."))
        }
        F::Reserved {
            attribute,
            in_parser,
        } => {
            let e = Error::Forbidden(format!("Attribute '{attribute}' is reserved."));
            if *in_parser { e.as_detail() } else { e }
        }
        F::PropertyNameTooLong => {
            Error::BadRequest("Custom property should not be greater than 255 characters.".into())
        }
        F::NotAnImageObject => Error::BadRequest(
            "Provided object does not match schema 'image': the body is not a JSON object".into(),
        ),
        F::InvalidImageId { id } => Error::BadRequest(format!("Invalid image id {id}")),
        F::NegativeValue { key, value } => Error::BadRequest(format!(
            "Invalid value '{value}' for parameter '{key}': Cannot be a negative value"
        )),
        F::OutOfRange { key } => Error::BadRequest(format!(
            "'{key}' value out of range, must not exceed 2147483647."
        )),
        F::LimitExceeded {
            what,
            attempted,
            maximum,
        } => {
            let what = match what {
                Counted::Properties => "properties",
                Counted::Tags => "tags",
            };
            Error::TooLarge(limit(what, attempted, *maximum))
        }
        F::MemberLimit {
            image,
            attempted,
            maximum,
        } => Error::TooLarge(format!(
            "Image member limit exceeded for image {image}: {}",
            limit("members for this image", attempted, *maximum)
        )),
        F::DuplicateMember { image, member } => {
            Error::Conflict(format!("Member {member} is duplicated for image {image}"))
        }
        F::NotAMember { image, member } => Error::NotFound(format!(
            "{member} not found in the member list of the image {image}."
        )),
        F::InvalidMemberStatus => Error::BadRequest(
            "Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".".into(),
        ),
        F::MembersRefused {
            image,
            op,
            not_shared,
        } => {
            const WHY: &str = "Only shared images have members.";
            match (op, not_shared) {
                (MemberOp::Show, true) => Error::NotFound(WHY.into()),
                (MemberOp::List, true) => Error::Forbidden(format!(
                    "Not allowed to list members for image {image}: {WHY}"
                )),
                (op, _) => Error::Forbidden(format!(
                    "Not allowed to {} members for image {image}.",
                    op.as_str()
                )),
            }
        }
        F::Transition { from, to } => Error::Conflict(format!(
            "Image status transition from {} to {} is not allowed",
            from.as_str(),
            to.as_str()
        )),
        F::FormatsMissing { missing } => Error::BadRequest(if missing.len() == 1 {
            format!("Property {} must be set prior to saving data.", missing[0])
        } else {
            format!(
                "Properties {} must be set prior to saving data.",
                missing.join(", ")
            )
        }),
        F::ChangedMeanwhile { image } => Error::Conflict(format!(
            "Image {image} was changed by another request while it was being updated; retry."
        )),
        F::Protected { image } => {
            Error::Forbidden(format!("Image {image} is protected and cannot be deleted."))
        }
        F::InUse { image, why } => Error::Conflict(format!(
            "Image {image} could not be deleted because it is in use: {why}"
        )),
        F::ActionInStatus { action, status } => Error::Forbidden(format!(
            "Not allowed to {action} image in status '{}'",
            status.as_str()
        )),
        F::SizeMismatch { expected, got } => Error::BadRequest(format!(
            "Size mismatch: expected {expected} bytes, got {got} bytes"
        )),
        F::SizeExceeds { expected, got } => Error::BadRequest(format!(
            "Size exceeds: expected {expected} bytes, got {got} bytes"
        )),
        F::FourByte { what, context } => Error::BadRequest(match context {
            Some(c) => format!("{c}: {}", what.message()),
            None => what.message(),
        }),
        F::TooLarge => Error::TooLarge(
            "The incoming image is too large: The provided image is too large.".into(),
        ),
        F::VanishedDuringUpload { image } => Error::Gone(format!(
            "Image {image} could not be found after upload. The image may have been deleted during the upload."
        )),
        F::DownloadDeactivated => Error::Forbidden(
            "The requested image has been deactivated. Image data download is forbidden.".into(),
        ),
        F::StoreSelectionUnavailable => Error::BadRequest(
            "Store selection for download is not available when multiple stores are not configured.".into(),
        ),
        F::UnknownStore { id } => Error::BadRequest(format!("Store '{id}' is not configured.")),
        F::SourceFailed { why } => Error::BadRequest(format!("Error reading image data: {why}")),
        F::Rejected { why } => Error::UnsupportedMediaType {
            msg: why.clone(),
            accept_patch: None,
        },
        F::Metadef(m) => metadef_refusal(m),
        F::ActiveTask { .. } => Error::Conflict("Image has active task".into()),
        F::ImportLocked { image } => Error::Conflict(format!(
            "New operation on image '{image}' is not permitted as prior operation is still in progress"
        )),
        F::LocationFiltered { url } => Error::BadRequest(format!(
            "URI for add location does not pass filtering: {url}"
        )),
        F::NoStoreFor { url } => Error::BadRequest(format!(
            "Invalid location {url}: no configured store holds it"
        )),
        F::BadLocation { url, why } => Error::BadRequest(format!("Invalid location {url}: {why}")),
        F::ImportFromRefused { why } => Error::BadRequest(why.clone()),
        F::TakenOver => Error::Conflict("task taken over by another node".into()),
        F::Store(e) => store_refusal(e),
        F::DatabaseUnavailable => {
            Error::Unavailable("The database is unavailable; please retry later.".into())
        }
        F::DatabaseBusy => Error::Unavailable("The database is busy; please retry later.".into()),
        F::Database => Error::Internal("Database error".into()),
        F::Internal { what } => Error::Internal(what.clone()),
    }
}

fn store_refusal(e: &StoreError) -> Error {
    match e {
        // Glance's wording for the two failures clients are told about.
        StoreError::Full => Error::TooLarge(format!("Image storage media is full: {e}")),
        StoreError::WriteDenied => Error::Unavailable(format!(
            "Insufficient permissions on image storage media: {e}"
        )),
        StoreError::NotFound(_) => Error::NotFound(e.to_string()),
        StoreError::InUse(_) => Error::Conflict(e.to_string()),
        StoreError::Duplicate(_) => {
            Error::Conflict(format!("Unable to upload duplicate image data: {e}"))
        }
        StoreError::ReadOnly => Error::BadRequest(e.to_string()),
        StoreError::Timeout(_) | StoreError::Unavailable(_) => Error::Unavailable(e.to_string()),
        _ => Error::Internal("Error in store configuration.".into()),
    }
}

/// What the render middleware needs to write the body: webob's `explanation` (empty: the
/// status's standard one) and `detail`.
#[derive(Clone, Debug, Default)]
pub struct ErrorText {
    pub explanation: String,
    pub detail: String,
    /// The body is the explanation alone (Glance's `body_template='${explanation}'`).
    pub bare: bool,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Fault(f) = &self {
            return refusal(f).into_response();
        }
        let status = self.status();
        let mut headers = HeaderMap::new();
        let inner = match &self {
            Error::Detail(e) => e.as_ref(),
            e => e,
        };
        match inner {
            Error::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            Error::Unauthorized { www_authenticate } => {
                if let Ok(v) = HeaderValue::from_str(www_authenticate) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Error::UnsupportedMediaType {
                accept_patch: Some(p),
                ..
            } => {
                headers.insert(
                    HeaderName::from_static("accept-patch"),
                    HeaderValue::from_static(p),
                );
            }
            _ => {}
        }
        // Glance raises every 415 and 416 with a detail (webob's 415 template shows nothing else).
        let detail = matches!(self, Error::Detail(_))
            || matches!(
                inner,
                Error::UnsupportedMediaType { .. } | Error::RangeNotSatisfiable(_)
            );
        let text = match inner {
            Error::MethodNotAllowed { .. } => ErrorText::default(),
            _ if detail => ErrorText {
                explanation: String::new(),
                detail: inner.to_string(),
                bare: false,
            },
            other => ErrorText {
                explanation: other.to_string(),
                detail: String::new(),
                bare: false,
            },
        };
        let mut resp = (status, headers).into_response();
        resp.extensions_mut().insert(text);
        resp
    }
}

/// The format webob picks among `text/html` and `application/json` from an Accept header; no
/// header (or nothing acceptable) means plain text.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum ErrorFormat {
    Html,
    Json,
    Plain,
}

pub fn pick_format(accept: Option<&str>) -> ErrorFormat {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return ErrorFormat::Plain;
    };
    let offers = [
        ("text/html", ErrorFormat::Html),
        ("application/json", ErrorFormat::Json),
    ];
    let mut best: Option<(f32, usize, ErrorFormat)> = None;
    for (i, (offer, fmt)) in offers.iter().enumerate() {
        let (otype, osub) = offer.split_once('/').unwrap_or((offer, ""));
        // The most specific matching range gives the quality of this offer.
        let mut q_for_offer: Option<(u8, f32)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            let (rtype, rsub) = media.split_once('/').unwrap_or((media.as_str(), ""));
            let specificity = if rtype == otype && rsub == osub {
                3
            } else if rtype == otype && rsub == "*" {
                2
            } else if rtype == "*" && rsub == "*" {
                1
            } else {
                continue;
            };
            if q_for_offer.is_none_or(|(s, _)| specificity > s) {
                q_for_offer = Some((specificity, q));
            }
        }
        if let Some((_, q)) = q_for_offer
            && q > 0.0
            && best.is_none_or(|(bq, _, _)| q > bq)
        {
            best = Some((q, i, *fmt));
        }
    }
    best.map(|(_, _, f)| f).unwrap_or(ErrorFormat::Plain)
}

/// The reason phrase webob gives a status, where it is not the one hyper knows.
pub fn webob_title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Request Entity Too Large",
        StatusCode::RANGE_NOT_SATISFIABLE => "Request Range Not Satisfiable",
        s => s.canonical_reason().unwrap_or("Unknown"),
    }
}

/// Renders an error body as webob does for an `HTTPException` with this text. `content_type`
/// is the request's (webob's 415 names it).
pub fn render_body(
    status: StatusCode,
    text: &ErrorText,
    method: &str,
    content_type: Option<&str>,
    format: ErrorFormat,
) -> (&'static str, String) {
    let explanation = if text.explanation.is_empty() {
        default_explanation(status).to_string()
    } else {
        text.explanation.clone()
    };
    // webob's body template, with its values escaped for the format.
    let body = |escape: fn(&str) -> String| {
        if text.bare {
            escape(&explanation)
        } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            // Without the header the variable stays unsubstituted, as in webob.
            let ct = content_type.map_or("${CONTENT_TYPE}".to_string(), escape);
            format!(
                "The request media type {ct} is not supported by this server.\n<br /><br />\n{}",
                escape(&text.detail)
            )
        } else if status == StatusCode::METHOD_NOT_ALLOWED && text.explanation.is_empty() {
            // webob's own 405 template: a space before the breaks and no blank lines after.
            format!(
                "The method {} is not allowed for this resource. <br /><br />\n{}",
                escape(method),
                escape(&text.detail)
            )
        } else {
            format!(
                "{}<br /><br />\n{}\n\n",
                escape(&explanation),
                escape(&text.detail)
            )
        }
    };
    let title = webob_title(status);
    let line = format!("{} {title}", status.as_u16());
    match format {
        ErrorFormat::Json => {
            let body = serde_json::json!({
                "message": body(str::to_string),
                "code": line,
                "title": title,
            });
            ("application/json", crate::json::to_string(&body))
        }
        ErrorFormat::Html => (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{line}</title>\n </head>\n <body>\n  <h1>{line}</h1>\n  {}\n </body>\n</html>",
                body(html_escape)
            ),
        ),
        ErrorFormat::Plain => (
            "text/plain; charset=UTF-8",
            format!("{line}\n\n{}", strip_tags(&body(str::to_string))),
        ),
    }
}

/// webob's `strip_tags` for plain-text bodies: newlines become spaces, `<br>`s newlines, other
/// tags go.
fn strip_tags(s: &str) -> String {
    let s = s.replace('\n', " ").replace('\r', "");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            out.push_str(&rest[open..]);
            return out;
        };
        if rest[open + 1..]
            .get(..2)
            .is_some_and(|t| t.eq_ignore_ascii_case("br"))
        {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// webob's explanation of a 401, which Glance answers to a missing or invalid token.
const UNAUTHORIZED: &str = "This server could not verify that you are authorized to access the \
    document you requested. Either you supplied the wrong credentials (e.g., bad password), or \
    your browser does not understand how to supply the credentials required.";

fn default_explanation(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "The resource could not be found.",
        StatusCode::UNAUTHORIZED => UNAUTHORIZED,
        StatusCode::FORBIDDEN => "Access was denied to this resource.",
        StatusCode::BAD_REQUEST => {
            "The server could not comply with the request since it is either malformed or otherwise incorrect."
        }
        StatusCode::CONFLICT => "There was a conflict when trying to complete your request.",
        StatusCode::GONE => {
            "This resource is no longer available.  No forwarding address is given."
        }
        StatusCode::PAYLOAD_TOO_LARGE => "The body of your request was too large for this server.",
        StatusCode::RANGE_NOT_SATISFIABLE => "The Range requested is not available.",
        StatusCode::SERVICE_UNAVAILABLE => {
            "The server is currently unavailable. Please try again at a later time."
        }
        StatusCode::INTERNAL_SERVER_ERROR => {
            "The server has either erred or is incapable of performing the requested operation."
        }
        _ => "",
    }
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// Glance's words for the metadata definition refusals.
fn metadef_refusal(m: &crate::domain::fault::Metadef) -> Error {
    use crate::domain::fault::{Metadef as M, MetadefKind as K};
    let what = |k: &K| match k {
        K::Object => "object",
        K::Property => "property",
        K::Tag => "tag",
    };
    match m {
        M::NamespaceMissing { name } => Error::NotFound(format!(
            "Metadata definition namespace={name} was not found."
        )),
        M::NamespaceNotFound { name } => Error::NotFound(format!("Namespace {name} not found")),
        M::NamespaceHidden => Error::NotFound(String::new()),
        M::MarkerHidden { name } => Error::Forbidden(format!(
            "Forbidding request, metadata definition namespace={name} is not visible."
        )),
        M::NamespaceExists { name } => Error::Conflict(format!(
            "The metadata definition namespace={name} already exists."
        )),
        M::NamespaceRenameTaken { name } => Error::Conflict(format!(
            "Invalid update. It would result in a duplicate metadata definition namespace with the same name of {name}"
        )),
        M::NamespaceProtected { name } => Error::Forbidden(format!(
            "Metadata definition namespace {name} is protected and cannot be deleted."
        )),
        M::EntryNotFound { kind, name } => Error::NotFound(match kind {
            K::Object => format!("Could not find metadata object {name}"),
            K::Property => format!("Could not find property {name}"),
            K::Tag => format!("Could not find metadata tag {name}"),
        }),
        M::EntryExists {
            kind: K::Tag,
            name,
            namespace,
        } => Error::Conflict(format!(
            "A metadata tag with name={name} already exists in namespace={namespace}. (Please note that metadata tag names are case insensitive)."
        )),
        M::EntryExists {
            kind,
            name,
            namespace,
        } => Error::Conflict(format!(
            "A metadata definition {} with name={name} already exists in namespace={namespace}.",
            what(kind)
        )),
        M::EntryRenameTaken {
            kind: K::Tag,
            name,
            namespace,
        } => metadef_refusal(&M::EntryExists {
            kind: K::Tag,
            name: name.clone(),
            namespace: namespace.clone(),
        }),
        M::EntryRenameTaken {
            kind,
            name,
            namespace,
        } => Error::Conflict(format!(
            "Invalid update. It would result in a duplicate metadata definition {} with the same name={name} in namespace={namespace}.",
            what(kind)
        )),
        M::EntryProtected { kind, name } => Error::Forbidden(format!(
            "Metadata definition {} {name} is protected and cannot be deleted.",
            what(kind)
        )),
        M::ResourceTypeNotFound { name } => Error::NotFound(format!(
            "The metadata definition resource-type with name={name}, was not found."
        )),
        M::AssociationNotFound {
            resource_type,
            namespace,
        } => Error::NotFound(format!(
            "The metadata definition resource-type association of resource-type={resource_type} to namespace={namespace}, was not found."
        )),
        M::AssociationExists {
            resource_type,
            namespace,
        } => Error::Conflict(format!(
            "The metadata definition resource-type association of resource-type={resource_type} to namespace={namespace} already exists."
        )),
        M::AssociationProtected { resource_type } => Error::Forbidden(format!(
            "Metadata definition resource-type-association {resource_type} is protected and cannot be deleted."
        )),
        M::AssociationToDeleteNotFound { resource_type } => Error::NotFound(format!(
            "Failed to find resource type {resource_type} to delete"
        )),
        M::PrefixMismatch { property, prefix } => Error::NotFound(format!(
            "Property {property} does not start with the expected resource type association prefix of '{}'.",
            prefix.as_deref().unwrap_or("None")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_matches_webob() {
        assert_eq!(pick_format(None), ErrorFormat::Plain);
        assert_eq!(pick_format(Some("*/*")), ErrorFormat::Html);
        assert_eq!(pick_format(Some("application/json")), ErrorFormat::Json);
        assert_eq!(
            pick_format(Some("text/html;q=0.5, application/json")),
            ErrorFormat::Json
        );
        assert_eq!(pick_format(Some("application/xml")), ErrorFormat::Plain);
        assert_eq!(pick_format(Some("text/*")), ErrorFormat::Html);
    }

    fn text(e: Error) -> ErrorText {
        e.into_response()
            .extensions()
            .get::<ErrorText>()
            .cloned()
            .unwrap()
    }

    /// A fact gets its status and Glance's words in one place: what a request answers is what
    /// a failed background task records (`Error::to_string`).
    #[test]
    fn facts_get_glance_words_and_status_once() {
        let cases: Vec<(Fault, u16, &str)> = vec![
            (
                Fault::ImageNotFound {
                    id: "x".into(),
                    lookup: Lookup::Parent,
                },
                404,
                "Image x not found.",
            ),
            (
                Fault::MemberLimit {
                    image: "i".into(),
                    attempted: 3,
                    maximum: 2,
                },
                413,
                "Image member limit exceeded for image i: The limit has been exceeded on the number of allowed image members for this image. Attempted: 3, Maximum: 2",
            ),
            (
                Fault::Transition {
                    from: crate::domain::image::Status::Active,
                    to: crate::domain::image::Status::Saving,
                },
                409,
                "Image status transition from active to saving is not allowed",
            ),
            (
                Fault::DatabaseUnavailable,
                503,
                "The database is unavailable; please retry later.",
            ),
            (
                Fault::Store(StoreError::Full),
                413,
                "Image storage media is full: There is not enough disk space on the image storage media.",
            ),
        ];
        for (fault, status, words) in cases {
            assert_eq!(fault.to_string(), words);
            let e = Error::from(fault);
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.to_string(), words);
            assert_eq!(text(e).explanation, words);
        }
    }

    /// Bodies as webob writes them (compared with Glance 33 under uWSGI).
    #[test]
    fn bodies_match_webob() {
        let nf = text(Error::NotFound("No image".into()));
        let (ct, body) = render_body(StatusCode::NOT_FOUND, &nf, "GET", None, ErrorFormat::Plain);
        assert_eq!(ct, "text/plain; charset=UTF-8");
        assert_eq!(body, "404 Not Found\n\nNo image\n\n   ");
        let dup = text(Error::Conflict("dup".into()));
        let (_, json) = render_body(StatusCode::CONFLICT, &dup, "POST", None, ErrorFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["code"], "409 Conflict");
        assert_eq!(v["title"], "Conflict");
        assert_eq!(v["message"], "dup<br /><br />\n\n\n");

        // A detail follows the standard explanation.
        let gone = text(Error::Conflict("Property x does not exist.".into()).as_detail());
        let (_, json) = render_body(
            StatusCode::CONFLICT,
            &gone,
            "PATCH",
            None,
            ErrorFormat::Json,
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["message"],
            "There was a conflict when trying to complete your request.<br /><br />\nProperty x does not exist.\n\n"
        );
        // 416: webob's title, explanation then detail; plain text as strip_tags leaves it.
        let range = text(Error::RangeNotSatisfiable("Invalid Range header.".into()));
        let status = StatusCode::RANGE_NOT_SATISFIABLE;
        let (_, plain) = render_body(status, &range, "GET", None, ErrorFormat::Plain);
        assert_eq!(
            plain,
            "416 Request Range Not Satisfiable\n\nThe Range requested is not available.\n\n Invalid Range header.  "
        );
        let (_, html) = render_body(status, &range, "GET", None, ErrorFormat::Html);
        assert_eq!(
            html,
            "<html>\n <head>\n  <title>416 Request Range Not Satisfiable</title>\n </head>\n <body>\n  <h1>416 Request Range Not Satisfiable</h1>\n  The Range requested is not available.<br /><br />\nInvalid Range header.\n\n\n </body>\n</html>"
        );
        // 415: webob's own template, naming the request's content type (escaped in HTML).
        let media = text(Error::UnsupportedMediaType {
            msg: "Invalid content type text/<b>".into(),
            accept_patch: None,
        });
        let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        let (_, html) = render_body(status, &media, "PUT", Some("text/<b>"), ErrorFormat::Html);
        assert!(
            html.contains("  The request media type text/&lt;b&gt; is not supported by this server.\n<br /><br />\nInvalid content type text/&lt;b&gt;\n </body>"),
            "{html}"
        );
        let (_, json) = render_body(status, &media, "PUT", None, ErrorFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["message"],
            "The request media type ${CONTENT_TYPE} is not supported by this server.\n<br /><br />\nInvalid content type text/<b>"
        );
        // 405: webob's own template (a space before the breaks, no blank lines after).
        let refused = text(Error::MethodNotAllowed { allow: "GET" });
        let status = StatusCode::METHOD_NOT_ALLOWED;
        let (_, plain) = render_body(status, &refused, "DELETE", None, ErrorFormat::Plain);
        assert_eq!(
            plain,
            "405 Method Not Allowed\n\nThe method DELETE is not allowed for this resource. \n\n "
        );
        let (_, json) = render_body(status, &refused, "POST", None, ErrorFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["message"],
            "The method POST is not allowed for this resource. <br /><br />\n"
        );
    }
}
