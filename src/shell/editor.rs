//! A byte-at-a-time line editor for a serial console.
//!
//! # Theory of operation
//!
//! The editor is a state machine fed one received byte at a time; whatever the terminal has
//! to show in response is written to a `core::fmt::Write` sink immediately. Nothing blocks
//! and nothing is read ahead, so the same code serves an interrupt-driven UART, a test
//! harness and a program driving the console.
//!
//! The line is printable ASCII only (bytes 0x20..=0x7e): the cursor column is then the byte
//! index, nothing can split a UTF-8 sequence, and invalid UTF-8 cannot enter. Other bytes
//! are control keys or are ignored. The line is capped at [`MAX_LINE`] bytes: further
//! characters are not echoed, and submitting such a line yields [`Event::TooLong`] so the
//! shell refuses it as a whole instead of running a truncated command.
//!
//! Echo discipline, for programs that parse the output: a character typed at the end of
//! the line is echoed exactly once and nothing else is written; edits in the middle rewrite
//! the tail and move the cursor back with `BS` or `CSI n D`. A line ends with CR, LF or
//! CRLF; the LF of a CRLF pair is swallowed so it does not submit a second, empty line.
//!
//! Keys (ANSI/VT100 and Emacs style): Left/Right, Home/End (`CSI H/F`, `SS3 H/F`,
//! `CSI 1~/4~/7~/8~`), Delete (`CSI 3~`), Up/Down history, Backspace (BS or DEL), Ctrl-A/E
//! home/end, Ctrl-B/F left/right, Ctrl-D delete, Ctrl-K kill to end, Ctrl-U kill to start,
//! Ctrl-W kill the previous word, Ctrl-P/N history, Ctrl-L redraw, Ctrl-C cancel the line,
//! Tab completion (the shell supplies the candidates). Unknown escape sequences are
//! consumed whole; a control byte inside one aborts it and is handled as itself.
//!
//! History keeps the last [`HISTORY_LEN`] distinct submitted lines; browsing it keeps the
//! line being typed as a draft that Down at the newest entry brings back.
#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::string::String;
use core::fmt::Write;

/// Longest line accepted, in bytes.
pub const MAX_LINE: usize = 256;
/// Submitted lines remembered for Up/Down.
pub const HISTORY_LEN: usize = 32;

/// Longest CSI parameter we keep; real keys use at most two digits.
const CSI_PARAM_CAP: u16 = 9999;

/// What the shell has to do after a byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing: the editor handled the byte (and drew whatever it needed).
    Pending,
    /// A line was submitted; the editor has already moved to a new line on the terminal.
    Line(String),
    /// A line longer than [`MAX_LINE`] was submitted and discarded.
    TooLong,
    /// Tab: call [`LineEditor::complete`] with candidates for [`LineEditor::before_cursor`].
    Complete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// Saw ESC.
    Esc,
    /// Saw `ESC [`; `param` is the first numeric parameter so far.
    Csi {
        param: u16,
        in_first: bool,
    },
    /// Saw `ESC O` (application cursor keys).
    Ss3,
}

enum Key {
    Left,
    Right,
    Home,
    End,
    Delete,
    Up,
    Down,
}

pub struct LineEditor {
    prompt: &'static str,
    line: String,
    cursor: usize,
    history: VecDeque<String>,
    /// Index into `history` while browsing it.
    browsing: Option<usize>,
    /// The line that was being typed when browsing started.
    draft: String,
    escape: Escape,
    /// The previous byte was CR: a following LF belongs to it.
    after_cr: bool,
    /// Characters were dropped because the line was full.
    overflowed: bool,
}

impl LineEditor {
    pub fn new(prompt: &'static str) -> Self {
        LineEditor {
            prompt,
            line: String::new(),
            cursor: 0,
            history: VecDeque::new(),
            browsing: None,
            draft: String::new(),
            escape: Escape::None,
            after_cr: false,
            overflowed: false,
        }
    }

    pub fn prompt(&self) -> &'static str {
        self.prompt
    }

    /// The line as typed so far.
    pub fn line(&self) -> &str {
        &self.line
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn before_cursor(&self) -> &str {
        &self.line[..self.cursor]
    }

    /// Oldest first.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.history.iter().map(String::as_str)
    }

    /// Draws the prompt and the current line with the cursor in place. Used at start-up,
    /// after a command's output, and after anything else scribbled over the line.
    pub fn show_prompt<W: Write + ?Sized>(&self, out: &mut W) {
        let _ = out.write_str(self.prompt);
        let _ = out.write_str(&self.line);
        move_left(out, self.line.len() - self.cursor);
    }

    pub fn feed<W: Write + ?Sized>(&mut self, byte: u8, out: &mut W) -> Event {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        match self.escape {
            Escape::None => {}
            Escape::Esc => {
                self.escape = match byte {
                    b'[' => Escape::Csi {
                        param: 0,
                        in_first: true,
                    },
                    b'O' => Escape::Ss3,
                    _ => Escape::None,
                };
                if self.escape != Escape::None {
                    return Event::Pending;
                }
                // ESC then something else (Meta-key, or a stray ESC): drop the ESC.
            }
            Escape::Ss3 => {
                self.escape = Escape::None;
                let key = match byte {
                    b'A' => Some(Key::Up),
                    b'B' => Some(Key::Down),
                    b'C' => Some(Key::Right),
                    b'D' => Some(Key::Left),
                    b'H' => Some(Key::Home),
                    b'F' => Some(Key::End),
                    0x20..=0x7e => None,
                    // A control byte is not part of the sequence: handle it below.
                    _ => return self.plain_byte(byte, after_cr, out),
                };
                if let Some(key) = key {
                    self.key(key, out);
                }
                return Event::Pending;
            }
            Escape::Csi { param, in_first } => {
                match byte {
                    b'0'..=b'9' => {
                        let param = if in_first {
                            (param * 10 + u16::from(byte - b'0')).min(CSI_PARAM_CAP)
                        } else {
                            param
                        };
                        self.escape = Escape::Csi { param, in_first };
                        return Event::Pending;
                    }
                    0x20..=0x3f => {
                        // Separators and intermediates: only the first parameter matters.
                        self.escape = Escape::Csi {
                            param,
                            in_first: false,
                        };
                        return Event::Pending;
                    }
                    0x40..=0x7e => {
                        self.escape = Escape::None;
                        let key = match (byte, param) {
                            (b'A', _) => Some(Key::Up),
                            (b'B', _) => Some(Key::Down),
                            (b'C', _) => Some(Key::Right),
                            (b'D', _) => Some(Key::Left),
                            (b'H', _) => Some(Key::Home),
                            (b'F', _) => Some(Key::End),
                            (b'~', 1 | 7) => Some(Key::Home),
                            (b'~', 4 | 8) => Some(Key::End),
                            (b'~', 3) => Some(Key::Delete),
                            _ => None,
                        };
                        if let Some(key) = key {
                            self.key(key, out);
                        }
                        return Event::Pending;
                    }
                    _ => {
                        self.escape = Escape::None;
                    }
                }
            }
        }
        self.plain_byte(byte, after_cr, out)
    }

    fn plain_byte<W: Write + ?Sized>(&mut self, byte: u8, after_cr: bool, out: &mut W) -> Event {
        match byte {
            b'\r' => {
                self.after_cr = true;
                return self.submit(out);
            }
            b'\n' if after_cr => {}
            b'\n' => return self.submit(out),
            0x1b => self.escape = Escape::Esc,
            0x01 => self.key(Key::Home, out),
            0x02 => self.key(Key::Left, out),
            0x03 => self.cancel(out),
            0x04 => self.key(Key::Delete, out),
            0x05 => self.key(Key::End, out),
            0x06 => self.key(Key::Right, out),
            0x08 | 0x7f => self.backspace(out),
            b'\t' => return Event::Complete,
            0x0b => self.kill_to_end(out),
            0x0c => {
                let _ = out.write_str("\x1b[H\x1b[2J");
                self.show_prompt(out);
            }
            0x0e => self.key(Key::Down, out),
            0x10 => self.key(Key::Up, out),
            0x15 => self.kill_to_start(out),
            0x17 => self.kill_word(out),
            0x20..=0x7e => {
                let mut text = [0u8; 4];
                self.insert(char::from(byte).encode_utf8(&mut text), out);
            }
            // Other control bytes and everything >= 0x80 (UTF-8, line noise): ignored.
            _ => {}
        }
        Event::Pending
    }

    /// Replaces the word that starts at byte `word_start` (and ends at the cursor) with
    /// the candidates' common prefix; lists them when that adds nothing. Each candidate is
    /// a complete replacement word including its terminator (`' '` or `'/'`).
    pub fn complete<W: Write + ?Sized>(
        &mut self,
        word_start: usize,
        candidates: &[String],
        out: &mut W,
    ) {
        if word_start > self.cursor || candidates.is_empty() {
            return;
        }
        let typed = &self.line[word_start..self.cursor];
        let common = common_prefix(candidates);
        if let Some(extra) = common.strip_prefix(typed).filter(|extra| !extra.is_empty()) {
            let extra = String::from(extra);
            if self.line.len() + extra.len() <= MAX_LINE {
                self.insert(&extra, out);
            }
            return;
        }
        if candidates.len() > 1 {
            let _ = out.write_str("\r\n");
            for (i, candidate) in candidates.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_str("  ");
                }
                let _ = out.write_str(display_name(candidate));
            }
            let _ = out.write_str("\r\n");
            self.show_prompt(out);
        }
    }

    fn key<W: Write + ?Sized>(&mut self, key: Key, out: &mut W) {
        match key {
            Key::Left if self.cursor > 0 => {
                self.cursor -= 1;
                move_left(out, 1);
            }
            Key::Right if self.cursor < self.line.len() => {
                self.cursor += 1;
                move_right(out, 1);
            }
            Key::Home => {
                move_left(out, self.cursor);
                self.cursor = 0;
            }
            Key::End => {
                move_right(out, self.line.len() - self.cursor);
                self.cursor = self.line.len();
            }
            Key::Delete if self.cursor < self.line.len() => {
                self.line.remove(self.cursor);
                self.rewrite_tail(1, out);
            }
            Key::Up => self.browse_older(out),
            Key::Down => self.browse_newer(out),
            _ => {}
        }
    }

    fn insert<W: Write + ?Sized>(&mut self, text: &str, out: &mut W) {
        if self.line.len() + text.len() > MAX_LINE {
            self.overflowed = true;
            return;
        }
        self.line.insert_str(self.cursor, text);
        self.cursor += text.len();
        let _ = out.write_str(text);
        self.rewrite_tail(0, out);
    }

    fn backspace<W: Write + ?Sized>(&mut self, out: &mut W) {
        if self.cursor == 0 {
            return;
        }
        self.cursor -= 1;
        self.line.remove(self.cursor);
        move_left(out, 1);
        self.rewrite_tail(1, out);
    }

    fn kill_to_start<W: Write + ?Sized>(&mut self, out: &mut W) {
        let removed = self.cursor;
        if removed == 0 {
            return;
        }
        move_left(out, removed);
        self.line.drain(..removed);
        self.cursor = 0;
        self.rewrite_tail(removed, out);
    }

    fn kill_to_end<W: Write + ?Sized>(&mut self, out: &mut W) {
        let removed = self.line.len() - self.cursor;
        if removed == 0 {
            return;
        }
        self.line.truncate(self.cursor);
        self.rewrite_tail(removed, out);
    }

    fn kill_word<W: Write + ?Sized>(&mut self, out: &mut W) {
        let before = self.line[..self.cursor].trim_end_matches(' ');
        let start = before.rfind(' ').map_or(0, |space| space + 1);
        let removed = self.cursor - start;
        if removed == 0 {
            return;
        }
        move_left(out, removed);
        self.line.drain(start..self.cursor);
        self.cursor = start;
        self.rewrite_tail(removed, out);
    }

    /// Redraws from the cursor to the end of the line, blanks `erased` cells that the line
    /// no longer covers, and puts the cursor back.
    fn rewrite_tail<W: Write + ?Sized>(&self, erased: usize, out: &mut W) {
        let tail = &self.line[self.cursor..];
        let _ = out.write_str(tail);
        for _ in 0..erased {
            let _ = out.write_char(' ');
        }
        move_left(out, tail.len() + erased);
    }

    fn replace_line<W: Write + ?Sized>(&mut self, text: String, out: &mut W) {
        move_left(out, self.cursor);
        let old_len = self.line.len();
        self.line = text;
        self.cursor = 0;
        self.rewrite_tail(old_len.saturating_sub(self.line.len()), out);
        move_right(out, self.line.len());
        self.cursor = self.line.len();
    }

    fn browse_older<W: Write + ?Sized>(&mut self, out: &mut W) {
        let index = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.line.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(index) => index - 1,
        };
        self.browsing = Some(index);
        let entry = self.history[index].clone();
        self.replace_line(entry, out);
    }

    fn browse_newer<W: Write + ?Sized>(&mut self, out: &mut W) {
        let Some(index) = self.browsing else {
            return;
        };
        let entry = if index + 1 < self.history.len() {
            self.browsing = Some(index + 1);
            self.history[index + 1].clone()
        } else {
            self.browsing = None;
            core::mem::take(&mut self.draft)
        };
        self.replace_line(entry, out);
    }

    fn cancel<W: Write + ?Sized>(&mut self, out: &mut W) {
        move_right(out, self.line.len() - self.cursor);
        let _ = out.write_str("^C\r\n");
        self.reset_line();
        self.show_prompt(out);
    }

    fn submit<W: Write + ?Sized>(&mut self, out: &mut W) -> Event {
        let _ = out.write_str("\r\n");
        let overflowed = self.overflowed;
        let line = core::mem::take(&mut self.line);
        self.reset_line();
        if overflowed {
            return Event::TooLong;
        }
        let worth_keeping =
            !line.trim().is_empty() && self.history.back().is_none_or(|newest| *newest != line);
        if worth_keeping {
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        Event::Line(line)
    }

    fn reset_line(&mut self) {
        self.line.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        self.overflowed = false;
    }
}

fn move_left<W: Write + ?Sized>(out: &mut W, columns: usize) {
    let _ = match columns {
        0 => Ok(()),
        1 => out.write_char('\x08'),
        n => write!(out, "\x1b[{}D", n),
    };
}

fn move_right<W: Write + ?Sized>(out: &mut W, columns: usize) {
    if columns > 0 {
        let _ = write!(out, "\x1b[{}C", columns);
    }
}

/// What a candidate looks like in a listing: its last path component, with the `/` that
/// marks a directory but without the space that ends a word.
fn display_name(candidate: &str) -> &str {
    let word = candidate.trim_end_matches(' ');
    let body = word.strip_suffix('/').unwrap_or(word);
    match body.rfind('/') {
        Some(slash) => &word[slash + 1..],
        None => word,
    }
}

fn common_prefix(candidates: &[String]) -> &str {
    let Some(first) = candidates.first() else {
        return "";
    };
    let mut len = first.len();
    for other in &candidates[1..] {
        len = first
            .bytes()
            .zip(other.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Candidates are ASCII in practice; stay on a char boundary regardless.
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    const PROMPT: &str = "> ";

    fn feed_all(editor: &mut LineEditor, bytes: &[u8]) -> (String, Vec<Event>) {
        let mut out = String::new();
        let events = bytes
            .iter()
            .map(|&b| editor.feed(b, &mut out))
            .filter(|event| *event != Event::Pending)
            .collect();
        (out, events)
    }

    fn submitted(bytes: &[u8]) -> String {
        let mut editor = LineEditor::new(PROMPT);
        let (_, events) = feed_all(&mut editor, bytes);
        match events.last() {
            Some(Event::Line(line)) => line.clone(),
            other => panic!("no line submitted: {:?}", other),
        }
    }

    #[test]
    fn typing_at_the_end_echoes_each_character_once() {
        let mut editor = LineEditor::new(PROMPT);
        let (out, events) = feed_all(&mut editor, b"echo hi\r");
        assert_eq!(out, "echo hi\r\n");
        assert_eq!(events, vec![Event::Line("echo hi".to_string())]);
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        for ending in [&b"\r"[..], b"\n", b"\r\n"] {
            let mut editor = LineEditor::new(PROMPT);
            let mut input = b"a".to_vec();
            input.extend_from_slice(ending);
            input.extend_from_slice(b"b");
            input.extend_from_slice(ending);
            let (_, events) = feed_all(&mut editor, &input);
            assert_eq!(
                events,
                vec![Event::Line("a".to_string()), Event::Line("b".to_string())],
                "ending {:?}",
                ending
            );
        }
        // Two CRs are two (empty) lines, and LF CR too: only CR LF pairs up.
        let mut editor = LineEditor::new(PROMPT);
        let (_, events) = feed_all(&mut editor, b"\r\r\n\r");
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn cursor_keys_edit_in_the_middle() {
        // "ac", Left, "b" -> "abc"
        assert_eq!(submitted(b"ac\x1b[Db\r"), "abc");
        // SS3 (application mode) arrows work too.
        assert_eq!(submitted(b"ac\x1bODb\r"), "abc");
        // Home then insert, End then append.
        assert_eq!(submitted(b"bc\x1b[Ha\x1b[Fd\r"), "abcd");
        assert_eq!(submitted(b"bc\x1b[1~a\x1b[4~d\r"), "abcd");
        assert_eq!(submitted(b"bc\x01a\x05d\r"), "abcd");
        // Right at the end and Left at the start do nothing.
        assert_eq!(submitted(b"\x1b[Dab\x1b[C\x1b[Cc\r"), "abc");
    }

    #[test]
    fn backspace_and_delete() {
        assert_eq!(submitted(b"abx\x7fc\r"), "abc");
        assert_eq!(submitted(b"abx\x08c\r"), "abc");
        assert_eq!(submitted(b"\x7f\x7fab\r"), "ab");
        // Delete removes the character under the cursor.
        assert_eq!(submitted(b"axbc\x1b[D\x1b[D\x1b[D\x1b[3~\r"), "abc");
        assert_eq!(submitted(b"axbc\x01\x06\x04\r"), "abc");
        // Delete at the end does nothing.
        assert_eq!(submitted(b"abc\x1b[3~\r"), "abc");
    }

    #[test]
    fn backspace_at_end_erases_on_screen() {
        let mut editor = LineEditor::new(PROMPT);
        let (out, _) = feed_all(&mut editor, b"ab\x7f");
        assert_eq!(out, "ab\x08 \x08");
    }

    #[test]
    fn middle_insert_redraws_tail_and_returns_cursor() {
        let mut editor = LineEditor::new(PROMPT);
        let (out, _) = feed_all(&mut editor, b"acd\x1b[D\x1b[Db");
        assert_eq!(out, "acd\x08\x08bcd\x1b[2D");
        assert_eq!(editor.line(), "abcd");
        assert_eq!(editor.cursor(), 2);
    }

    #[test]
    fn kill_keys() {
        assert_eq!(submitted(b"junk\x15ok\r"), "ok");
        // Ctrl-U kills only what is left of the cursor.
        assert_eq!(submitted(b"xxok\x1b[D\x1b[D\x15\r"), "ok");
        assert_eq!(submitted(b"okxx\x1b[D\x1b[D\x0b\r"), "ok");
        assert_eq!(submitted(b"echo one two\x17three\r"), "echo one three");
        assert_eq!(submitted(b"echo one   \x17\x17x\r"), "x");
    }

    #[test]
    fn ctrl_c_cancels_and_reprompts() {
        let mut editor = LineEditor::new(PROMPT);
        let (out, events) = feed_all(&mut editor, b"rm -rf\x1b[D\x03");
        assert!(events.is_empty());
        assert!(out.ends_with("\x1b[1C^C\r\n> "), "{:?}", out);
        assert_eq!(editor.line(), "");
        let (_, events) = feed_all(&mut editor, b"ok\r");
        assert_eq!(events, vec![Event::Line("ok".to_string())]);
        // A cancelled line is not history.
        assert_eq!(editor.history().collect::<Vec<_>>(), vec!["ok"]);
    }

    #[test]
    fn history_up_down_and_draft() {
        let mut editor = LineEditor::new(PROMPT);
        feed_all(&mut editor, b"one\rtwo\rtwo\r\r");
        assert_eq!(editor.history().collect::<Vec<_>>(), vec!["one", "two"]);
        feed_all(&mut editor, b"dra\x1b[A");
        assert_eq!(editor.line(), "two");
        feed_all(&mut editor, b"\x1b[A\x1b[A");
        assert_eq!(editor.line(), "one");
        feed_all(&mut editor, b"\x1b[B");
        assert_eq!(editor.line(), "two");
        feed_all(&mut editor, b"\x1b[B");
        assert_eq!(editor.line(), "dra");
        feed_all(&mut editor, b"\x1b[B");
        assert_eq!(editor.line(), "dra");
        let (_, events) = feed_all(&mut editor, b"\x10\x10 x\r");
        assert_eq!(events, vec![Event::Line("one x".to_string())]);
    }

    #[test]
    fn history_redraw_blanks_a_longer_old_line() {
        let mut editor = LineEditor::new(PROMPT);
        feed_all(&mut editor, b"ab\r");
        let (out, _) = feed_all(&mut editor, b"wxyz\x1b[A");
        // Back to column 0, write "ab", blank two cells, come back, move to the end.
        assert_eq!(out, "wxyz\x1b[4Dab  \x1b[4D\x1b[2C");
    }

    #[test]
    fn history_is_capped() {
        let mut editor = LineEditor::new(PROMPT);
        for i in 0..(HISTORY_LEN + 10) {
            let line = alloc::format!("cmd{}\r", i);
            feed_all(&mut editor, line.as_bytes());
        }
        assert_eq!(editor.history().count(), HISTORY_LEN);
        assert_eq!(editor.history().next(), Some("cmd10"));
    }

    #[test]
    fn long_lines_are_refused_whole() {
        let mut editor = LineEditor::new(PROMPT);
        let mut input = vec![b'x'; MAX_LINE + 50];
        input.push(b'\r');
        let (out, events) = feed_all(&mut editor, &input);
        assert_eq!(events, vec![Event::TooLong]);
        // Only what fitted was echoed.
        assert_eq!(out.len(), MAX_LINE + 2);
        assert_eq!(editor.history().count(), 0);
        let (_, events) = feed_all(&mut editor, b"ok\r");
        assert_eq!(events, vec![Event::Line("ok".to_string())]);
        // Exactly MAX_LINE is fine.
        let mut input = vec![b'y'; MAX_LINE];
        input.push(b'\n');
        let (_, events) = feed_all(&mut editor, &input);
        assert!(matches!(&events[..], [Event::Line(line)] if line.len() == MAX_LINE));
    }

    #[test]
    fn non_ascii_and_unknown_sequences_are_ignored() {
        assert_eq!(submitted(b"a\xc3\xa9\xffb\r"), "ab");
        assert_eq!(submitted(b"a\x1b[99;5Zb\x1b[2~c\r"), "abc");
        // A lone ESC before a letter drops only the ESC.
        assert_eq!(submitted(b"a\x1bbc\r"), "abc");
        // A line end inside a sequence still ends the line.
        assert_eq!(submitted(b"ab\x1b[1\r"), "ab");
        assert_eq!(submitted(b"ab\x1bO\r"), "ab");
    }

    #[test]
    fn tab_asks_for_completion_and_inserts_common_prefix() {
        let mut editor = LineEditor::new(PROMPT);
        let (_, events) = feed_all(&mut editor, b"ca\t");
        assert_eq!(events, vec![Event::Complete]);
        let mut out = String::new();
        editor.complete(0, &["cat ".to_string()], &mut out);
        assert_eq!(out, "t ");
        assert_eq!(editor.line(), "cat ");

        let mut editor = LineEditor::new(PROMPT);
        feed_all(&mut editor, b"ls /proc/b");
        let mut out = String::new();
        let candidates = ["/proc/buddyinfo ".to_string(), "/proc/bx/".to_string()];
        editor.complete(3, &candidates, &mut out);
        assert_eq!(out, "\r\nbuddyinfo  bx/\r\n> ls /proc/b");
        assert_eq!(editor.line(), "ls /proc/b");
    }
}
