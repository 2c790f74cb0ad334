//! The one error type of the service, mapped once to Glance-style (webob) error responses.
//!
//! Handlers return `Error`; its `IntoResponse` leaves the explanation in a response extension and
//! the `render` middleware, which sees the request's `Accept`, writes the body the way webob
//! renders an `HTTPException`: HTML, JSON or plain text.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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
        }
    }

    /// This error as Glance raises it: message as webob's `detail` (see `Error::Detail`).
    pub fn as_detail(self) -> Error {
        Error::Detail(Box::new(self))
    }

    pub fn image_not_found(id: &str) -> Self {
        Error::NotFound(format!("No image found with ID {id}"))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // The database is down or unreachable: the client may retry; the pool reconnects.
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::Unavailable("The database is unavailable; please retry later.".into())
            }
            sqlx::Error::Database(db) if is_lost_connection(db.as_ref()) => {
                tracing::warn!(error = %e, "database connection lost");
                Error::Unavailable("The database is unavailable; please retry later.".into())
            }
            _ => {
                tracing::error!(error = %e, "database error");
                Error::Internal("Database error".into())
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

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
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
