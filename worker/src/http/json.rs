//! `ApiJson<T>`: axum's `Json` with rejections in the API's own error shape, and a helper
//! for typed query strings.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body; a malformed one is a 400 (syntax) or 422 (wrong shape) in the API's
/// error shape, naming the offending field where serde can.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                let (field, message) = data_error(&e.body_text());
                Err(ApiError::invalid(&field, message))
            }
            Err(JsonRejection::JsonSyntaxError(_)) => {
                Err(ApiError::bad_request("the body is not valid JSON"))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// The field and a readable message from the text of a `JsonDataError`, which reads
/// "Failed to deserialize the JSON body into the target type: {path}: {serde error} at line
/// N column M", the path left out at the top level. The field is the path (for a missing
/// field, the path to it and its name); it is "" when the text names none.
fn data_error(text: &str) -> (String, String) {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let text = strip_position(text);
    // A path is made of keys, `[index]` and `?`, joined by dots; serde's own messages
    // ("invalid type: ...", "unknown variant `x`, expected ...") all contain a space.
    let (path, error) = match text.split_once(": ") {
        Some((path, error))
            if !path.is_empty() && !path.contains(char::is_whitespace) && !path.contains('`') =>
        {
            (Some(path), error)
        }
        _ => (None, text),
    };
    let missing = error
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let field = match (path, missing) {
        (Some(path), Some(name)) => format!("{path}.{name}"),
        (Some(path), None) => path.to_owned(),
        (None, Some(name)) => name.to_owned(),
        (None, None) => String::new(),
    };
    (field, text.to_owned())
}

/// `text` without serde_json's trailing " at line N column M".
fn strip_position(text: &str) -> &str {
    let Some((head, position)) = text.rsplit_once(" at line ") else {
        return text;
    };
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match position.split_once(" column ") {
        Some((line, column)) if is_number(line) && is_number(column) => head,
        _ => text,
    }
}

/// A typed query string with rejections in the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::invalid("", e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::data_error;

    fn parse(text: &str) -> (String, String) {
        data_error(&format!(
            "Failed to deserialize the JSON body into the target type: {text}"
        ))
    }

    #[test]
    fn wrong_type_names_its_path() {
        assert_eq!(
            parse(
                "lines[0].quantity: invalid type: string \"x\", expected i64 at line 1 column 40"
            ),
            (
                "lines[0].quantity".to_owned(),
                "lines[0].quantity: invalid type: string \"x\", expected i64".to_owned()
            )
        );
        assert_eq!(
            parse("name: invalid type: integer `3`, expected a string at line 1 column 9").0,
            "name"
        );
    }

    #[test]
    fn missing_field_names_the_field() {
        assert_eq!(
            parse("missing field `name` at line 1 column 2"),
            ("name".to_owned(), "missing field `name`".to_owned())
        );
        assert_eq!(
            parse("b[0]: missing field `y` at line 1 column 23"),
            ("b[0].y".to_owned(), "b[0]: missing field `y`".to_owned())
        );
    }

    #[test]
    fn no_path_leaves_the_field_empty() {
        assert_eq!(
            parse("invalid type: sequence, expected struct Body at line 1 column 0"),
            (
                String::new(),
                "invalid type: sequence, expected struct Body".to_owned()
            )
        );
        // Text of another shape is passed on whole.
        assert_eq!(
            data_error("something else"),
            (String::new(), "something else".to_owned())
        );
    }
}
