//! The LLM API key: from the environment, else asked for with hidden input.
//! It is never printed, logged, written to disk or put in an argument list;
//! commands hand it to children through their environment only.

use std::io::{self, IsTerminal};

use anyhow::bail;
use secrecy::{ExposeSecret, SecretString};

use crate::project::API_KEY_VAR;

/// What a key looks like at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyShape {
    Empty,
    /// Not an Anthropic key (`sk-ant-...`); maybe a paste of something else.
    Unexpected,
    Plausible,
}

/// Judge a key without revealing it.
pub fn key_shape(key: &str) -> KeyShape {
    let key = key.trim();
    if key.is_empty() {
        KeyShape::Empty
    } else if key.starts_with("sk-ant-") {
        KeyShape::Plausible
    } else {
        KeyShape::Unexpected
    }
}

/// The key from `API_KEY_VAR`, or asked for on the terminal.
pub fn obtain() -> anyhow::Result<SecretString> {
    if let Ok(key) = std::env::var(API_KEY_VAR)
        && key_shape(&key) != KeyShape::Empty
    {
        return Ok(SecretString::from(key.trim().to_string()));
    }
    if !io::stdin().is_terminal() {
        bail!(
            "{API_KEY_VAR} is not set and there is no terminal to ask for it: \
             run `export {API_KEY_VAR}=sk-ant-...` and try again"
        );
    }
    ask(
        |prompt| rpassword::prompt_password(prompt),
        |msg| eprintln!("! {msg}"),
    )
}

/// Ask for the key with `read` (hidden input in production). An empty
/// answer cancels; a key of unexpected shape gets a warning and one more try.
pub fn ask(
    mut read: impl FnMut(&str) -> io::Result<String>,
    mut warn: impl FnMut(&str),
) -> anyhow::Result<SecretString> {
    let cancelled =
        || anyhow::anyhow!("no API key given: cancelled (set {API_KEY_VAR} to skip this question)");
    let first = read(&format!("{API_KEY_VAR} (input hidden, Enter to cancel): "))?;
    match key_shape(&first) {
        KeyShape::Empty => return Err(cancelled()),
        KeyShape::Plausible => return Ok(SecretString::from(first.trim().to_string())),
        KeyShape::Unexpected => warn(
            "that key does not start with sk-ant- (Anthropic keys do); paste it again to use it anyway",
        ),
    }
    let second = read("API key again (Enter to cancel): ")?;
    match key_shape(&second) {
        KeyShape::Empty => Err(cancelled()),
        _ => Ok(SecretString::from(second.trim().to_string())),
    }
}

/// The key as an environment pair for a child process.
pub fn as_env(key: &SecretString) -> (&'static str, &str) {
    (API_KEY_VAR, key.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn scripted(answers: &[&str]) -> impl FnMut(&str) -> io::Result<String> {
        let mut answers: VecDeque<String> = answers.iter().map(|s| s.to_string()).collect();
        move |_prompt| Ok(answers.pop_front().expect("asked more often than scripted"))
    }

    #[test]
    fn shapes() {
        assert_eq!(key_shape(""), KeyShape::Empty);
        assert_eq!(key_shape("  \n"), KeyShape::Empty);
        assert_eq!(key_shape("sk-ant-api03-abc"), KeyShape::Plausible);
        assert_eq!(key_shape("sk-proj-abc"), KeyShape::Unexpected);
    }

    #[test]
    fn plausible_key_accepted_without_warning() {
        let mut warnings = Vec::new();
        let key = ask(scripted(&["sk-ant-xyz\n"]), |w| {
            warnings.push(w.to_string())
        })
        .unwrap();
        assert_eq!(key.expose_secret(), "sk-ant-xyz");
        assert!(warnings.is_empty());
    }

    #[test]
    fn empty_answer_cancels() {
        let err = ask(scripted(&[""]), |_| {}).unwrap_err();
        assert!(err.to_string().contains("cancelled"));
    }

    #[test]
    fn unexpected_key_gets_warning_and_second_chance() {
        let mut warnings = Vec::new();
        let key = ask(scripted(&["oops", "sk-ant-right"]), |w| {
            warnings.push(w.to_string())
        })
        .unwrap();
        assert_eq!(key.expose_secret(), "sk-ant-right");
        assert_eq!(warnings.len(), 1);
        assert!(
            !warnings[0].contains("oops"),
            "the warning must not echo the key"
        );

        let err = ask(scripted(&["oops", ""]), |_| {}).unwrap_err();
        assert!(err.to_string().contains("cancelled"));

        // Insisting on an unusual key (another provider's, say) is allowed.
        let key = ask(scripted(&["other-key", "other-key"]), |_| {}).unwrap();
        assert_eq!(key.expose_secret(), "other-key");
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let key = SecretString::from("sk-ant-secret".to_string());
        assert!(!format!("{key:?}").contains("sk-ant-secret"));
    }
}
