//! Splitting a command line into words, the way a small POSIX shell does.
//!
//! # Theory of operation
//!
//! Words are separated by unquoted blanks. Single quotes keep everything literally; double
//! quotes keep blanks and `>` but let a backslash escape `"` and `\`; outside quotes a
//! backslash makes the next character literal. An unquoted `>` or `>>` is an operator even
//! when glued to a word (`echo 5>alloc`), exactly as in sh: the next word is the file to
//! write. A quote left open is an error rather than a guess.
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;

/// A parsed command line: its words and at most one output redirection.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    pub words: Vec<String>,
    pub redirect: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LexError {
    UnterminatedQuote(char),
    MissingRedirectTarget,
    MultipleRedirects,
}

impl core::fmt::Display for LexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LexError::UnterminatedQuote(q) => write!(f, "unterminated {} quote", q),
            LexError::MissingRedirectTarget => f.write_str("'>' needs a file name after it"),
            LexError::MultipleRedirects => f.write_str("only one '>' redirection is allowed"),
        }
    }
}

impl core::error::Error for LexError {}

enum Token {
    Word(String),
    Redirect,
}

pub fn parse(line: &str) -> Result<CommandLine, LexError> {
    let tokens = tokenize(line)?;
    let mut parsed = CommandLine::default();
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        match token {
            Token::Word(word) => parsed.words.push(word),
            Token::Redirect => {
                if parsed.redirect.is_some() {
                    return Err(LexError::MultipleRedirects);
                }
                match tokens.next() {
                    Some(Token::Word(target)) => parsed.redirect = Some(target),
                    _ => return Err(LexError::MissingRedirectTarget),
                }
            }
        }
    }
    Ok(parsed)
}

fn tokenize(line: &str) -> Result<Vec<Token>, LexError> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    // A word exists once anything, even an empty quoted string, has been seen.
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    tokens.push(Token::Word(core::mem::take(&mut word)));
                    in_word = false;
                }
            }
            '>' => {
                if in_word {
                    tokens.push(Token::Word(core::mem::take(&mut word)));
                    in_word = false;
                }
                // `>>` appends in sh; sysfs files have nothing to append to, so it is `>`.
                if chars.peek() == Some(&'>') {
                    chars.next();
                }
                tokens.push(Token::Redirect);
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => word.push(inner),
                        None => return Err(LexError::UnterminatedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&escaped @ ('"' | '\\')) => {
                                chars.next();
                                word.push(escaped);
                            }
                            _ => word.push('\\'),
                        },
                        Some(inner) => word.push(inner),
                        None => return Err(LexError::UnterminatedQuote('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                // A trailing backslash has nothing to escape; keep it literally.
                word.push(chars.next().unwrap_or('\\'));
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        tokens.push(Token::Word(word));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn words(line: &str) -> Vec<String> {
        parse(line).unwrap().words
    }

    #[test]
    fn blanks_separate_words() {
        assert_eq!(words("  echo   a\tb  "), vec!["echo", "a", "b"]);
        assert!(words("").is_empty());
        assert!(words("   ").is_empty());
    }

    #[test]
    fn quotes_keep_blanks_and_operators() {
        assert_eq!(
            words("echo 'a  b' \"c > d\""),
            vec!["echo", "a  b", "c > d"]
        );
        assert_eq!(words("echo '' x"), vec!["echo", "", "x"]);
        assert_eq!(
            words(r#"echo "say \"hi\" \n""#),
            vec!["echo", r#"say "hi" \n"#]
        );
        assert_eq!(words(r"echo a\ b \>"), vec!["echo", "a b", ">"]);
        assert_eq!(words("echo ab'c d'ef"), vec!["echo", "abc def"]);
    }

    #[test]
    fn redirection() {
        let parsed = parse("echo 5 > /sys/x").unwrap();
        assert_eq!(parsed.words, vec!["echo", "5"]);
        assert_eq!(parsed.redirect.as_deref(), Some("/sys/x"));
        let glued = parse("echo 5>/sys/x").unwrap();
        assert_eq!(glued.words, vec!["echo", "5"]);
        assert_eq!(glued.redirect.as_deref(), Some("/sys/x"));
        assert_eq!(parse("echo 5 >> f").unwrap().redirect.as_deref(), Some("f"));
        assert_eq!(parse("echo > f 5").unwrap().words, vec!["echo", "5"]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("echo 'a").unwrap_err(),
            LexError::UnterminatedQuote('\'')
        );
        assert_eq!(
            parse("echo \"a").unwrap_err(),
            LexError::UnterminatedQuote('"')
        );
        assert_eq!(
            parse("echo a >").unwrap_err(),
            LexError::MissingRedirectTarget
        );
        assert_eq!(
            parse("echo a > > b").unwrap_err(),
            LexError::MissingRedirectTarget
        );
        assert_eq!(
            parse("echo a > b > c").unwrap_err(),
            LexError::MultipleRedirects
        );
        assert!(parse("echo 'a")
            .unwrap_err()
            .to_string()
            .contains("unterminated"));
    }
}
