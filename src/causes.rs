//! An error and its causes as one line for people. Every layer prints errors this way (the
//! service's refusals, premium's render failures, the CLI), so it sits below all of them and
//! knows nothing of any.

/// An error and its causes, for people: "reading x: No such file or directory". Error types
/// here name their cause only as `source()`, never again in their own message.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}
