//! How deeply a YAML text nests, found in one pass without parsing it.
//!
//! libyaml (under serde_yaml_ng) reads a whole document into events before anything can look
//! at them, and its scanner does work proportional to the flow nesting for every token: 50,000
//! nested `[` took 7.8 s, 100,000 more than a minute. So the depth is bounded first, here.
//!
//! This follows libyaml's own tokenizer (`scanner.c`) for everything that decides what is
//! structure and what is text: token starts, plain scalars that continue over lines, quoted
//! and block scalars, comments, tags, anchors and aliases, indentation and simple keys. Where
//! libyaml would stop with an error this scanner goes on: what follows an error is never
//! parsed, so counting it can only refuse a text that fails anyway. Aliases are not expanded
//! here; the key walk (`super::unique`) bounds what they expand to.

/// The nesting went past the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep {
    /// 1-based line where it did.
    pub line: usize,
}

/// Refuses `text` when any collection in it nests deeper than `max` (the top collection is
/// at depth 1).
pub(super) fn check(text: &str, max: usize) -> Result<(), TooDeep> {
    Scanner::new(text, max).run()
}

/// The deepest nesting in `text` as this scanner sees it.
#[cfg(test)]
pub(super) fn depth(text: &str) -> usize {
    let mut s = Scanner::new(text, usize::MAX);
    s.run().expect("no bound");
    s.deepest
}

/// A possible simple key (`key: value` without `?`), as libyaml keeps one per flow level.
#[derive(Debug, Clone, Copy, Default)]
struct Key {
    possible: bool,
    line: usize,
    index: usize,
    column: usize,
    /// For a key that is a flow collection: the deepest nesting inside it. If it turns out to
    /// be a key of a new block mapping, all of that is one level deeper.
    inner: usize,
}

/// A block collection: an entry of libyaml's indentation stack.
#[derive(Debug)]
struct Block {
    column: usize,
    sequence: bool,
    /// A mapping whose current value is a sequence at the mapping's own indentation
    /// (`key:\n- item`): one level more without an indentation of its own.
    indentless: bool,
}

/// An open flow collection.
#[derive(Debug)]
struct Flow {
    sequence: bool,
    /// A sequence entry that is a single-pair mapping (`[a: b]`): one level more.
    pair: bool,
    key: Key,
    /// Deepest nesting inside the current entry, which may still turn out to be a pair's key.
    entry: usize,
    /// Deepest nesting inside this collection so far (its own depth included).
    deepest: usize,
}

struct Scanner<'a> {
    b: &'a [u8],
    /// Byte offset.
    i: usize,
    /// Character offset (libyaml's `index`).
    index: usize,
    line: usize,
    column: usize,
    max: usize,
    deepest: usize,
    blocks: Vec<Block>,
    flows: Vec<Flow>,
    block_key: Key,
    /// libyaml's `simple_key_allowed`.
    allowed: bool,
    /// Levels from `blocks` (each 1, or 2 with an indentless sequence).
    block_depth: usize,
    /// Levels from `flows` (each 1, or 2 with an open pair).
    flow_depth: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, max: usize) -> Self {
        Self {
            b: text.as_bytes(),
            i: 0,
            index: 0,
            line: 1,
            column: 0,
            max,
            deepest: 0,
            blocks: Vec::new(),
            flows: Vec::new(),
            block_key: Key::default(),
            allowed: true,
            block_depth: 0,
            flow_depth: 0,
        }
    }

    fn run(&mut self) -> Result<(), TooDeep> {
        loop {
            self.skip_to_token();
            if self.i >= self.b.len() {
                return Ok(());
            }
            let start = self.i;
            self.token()?;
            if self.i == start {
                // Something libyaml refuses to start a token with; it stops there.
                self.advance();
            }
        }
    }

    fn token(&mut self) -> Result<(), TooDeep> {
        let in_block = self.flows.is_empty();
        if in_block {
            self.unroll(self.column as isize);
        }
        let c = self.at(0);
        if self.column == 0 && c == b'%' {
            while !self.breakz_at(0) {
                self.advance();
            }
            return Ok(());
        }
        if self.column == 0 && self.document_marker() {
            if in_block {
                self.unroll(-1);
            }
            self.slot().possible = false;
            self.allowed = false;
            (0..3).for_each(|_| self.advance());
            return Ok(());
        }
        let block_entry = c == b'-' && self.blankz_at(1);
        if in_block && !block_entry {
            self.end_indentless();
        }
        match c {
            b'[' | b'{' => self.open(c == b'['),
            b']' | b'}' => {
                self.close();
                Ok(())
            }
            b',' => {
                self.entry();
                Ok(())
            }
            b'-' if block_entry => self.block_entry(),
            b'?' if !in_block || self.blankz_at(1) => self.explicit_key(),
            b':' if !in_block || self.blankz_at(1) => self.value(),
            b'*' | b'&' => {
                self.save_key();
                self.allowed = false;
                self.advance();
                while is_anchor_char(self.at(0)) {
                    self.advance();
                }
                Ok(())
            }
            b'!' => {
                self.save_key();
                self.allowed = false;
                self.tag();
                Ok(())
            }
            b'|' | b'>' if in_block => {
                self.slot().possible = false;
                self.allowed = true;
                self.block_scalar();
                Ok(())
            }
            b'\'' | b'"' => {
                self.save_key();
                self.allowed = false;
                self.quoted(c);
                Ok(())
            }
            _ => {
                self.save_key();
                self.allowed = false;
                self.plain();
                Ok(())
            }
        }
    }

    // --- depth bookkeeping ---

    fn depth(&self) -> usize {
        self.block_depth + self.flow_depth
    }

    fn reached(&mut self, depth: usize) -> Result<(), TooDeep> {
        self.deepest = self.deepest.max(depth);
        if depth > self.max {
            Err(TooDeep { line: self.line })
        } else {
            Ok(())
        }
    }

    fn indent(&self) -> isize {
        self.blocks.last().map_or(-1, |b| b.column as isize)
    }

    /// libyaml's `roll_indent`: a block collection starts at `column` unless one is already
    /// there. Returns whether one started.
    fn roll(&mut self, column: usize, sequence: bool) -> Result<bool, TooDeep> {
        if self.indent() < column as isize {
            self.blocks.push(Block {
                column,
                sequence,
                indentless: false,
            });
            self.block_depth += 1;
            self.reached(self.depth())?;
            return Ok(true);
        }
        if let Some(top) = self.blocks.last_mut()
            && sequence
            && top.column == column
            && !top.sequence
            && !top.indentless
        {
            top.indentless = true;
            self.block_depth += 1;
            self.reached(self.depth())?;
        }
        Ok(false)
    }

    /// libyaml's `unroll_indent`: block collections indented more than `column` end.
    fn unroll(&mut self, column: isize) {
        while let Some(top) = self.blocks.last() {
            if top.column as isize <= column {
                break;
            }
            self.block_depth -= 1 + usize::from(top.indentless);
            self.blocks.pop();
        }
    }

    /// A token at a mapping's own indentation that is not `- ` ends its indentless sequence.
    fn end_indentless(&mut self) {
        if let Some(top) = self.blocks.last_mut()
            && top.indentless
            && top.column == self.column
        {
            top.indentless = false;
            self.block_depth -= 1;
        }
    }

    /// The simple-key slot of the current flow level.
    fn slot(&mut self) -> &mut Key {
        match self.flows.last_mut() {
            Some(f) => &mut f.key,
            None => &mut self.block_key,
        }
    }

    fn save_key(&mut self) {
        if self.allowed {
            let key = Key {
                possible: true,
                line: self.line,
                index: self.index,
                column: self.column,
                inner: 0,
            };
            *self.slot() = key;
        }
    }

    // --- indicators ---

    fn open(&mut self, sequence: bool) -> Result<(), TooDeep> {
        self.save_key();
        let depth = self.depth() + 1;
        self.flows.push(Flow {
            sequence,
            pair: false,
            key: Key::default(),
            entry: 0,
            deepest: depth,
        });
        self.flow_depth += 1;
        self.allowed = true;
        self.advance();
        self.reached(depth)
    }

    fn close(&mut self) {
        self.slot().possible = false;
        if let Some(flow) = self.flows.pop() {
            self.flow_depth -= 1 + usize::from(flow.pair);
            let deepest = flow.deepest.max(flow.entry);
            match self.flows.last_mut() {
                Some(parent) => parent.entry = parent.entry.max(deepest),
                None => self.block_key.inner = deepest,
            }
        }
        self.allowed = false;
        self.advance();
    }

    fn entry(&mut self) {
        self.slot().possible = false;
        if let Some(flow) = self.flows.last_mut() {
            flow.deepest = flow.deepest.max(flow.entry);
            flow.entry = 0;
            if flow.pair {
                flow.pair = false;
                self.flow_depth -= 1;
            }
        }
        self.allowed = true;
        self.advance();
    }

    fn block_entry(&mut self) -> Result<(), TooDeep> {
        if self.flows.is_empty() {
            self.roll(self.column, true)?;
        }
        self.slot().possible = false;
        self.allowed = true;
        self.advance();
        Ok(())
    }

    fn explicit_key(&mut self) -> Result<(), TooDeep> {
        if self.flows.is_empty() {
            self.roll(self.column, false)?;
        } else {
            self.pair()?;
        }
        self.slot().possible = false;
        self.allowed = self.flows.is_empty();
        self.advance();
        Ok(())
    }

    fn value(&mut self) -> Result<(), TooDeep> {
        let key = *self.slot();
        let fresh = key.possible && key.line == self.line && key.index + 1024 >= self.index;
        if fresh {
            self.slot().possible = false;
            if self.flows.is_empty() {
                if self.roll(key.column, false)? && key.inner > 0 {
                    self.reached(key.inner + 1)?;
                }
            } else {
                self.pair()?;
            }
            self.allowed = false;
        } else {
            if self.flows.is_empty() {
                self.roll(self.column, false)?;
            } else {
                self.pair()?;
            }
            self.allowed = self.flows.is_empty();
        }
        self.advance();
        Ok(())
    }

    /// In a flow sequence, `key: value` is a single-pair mapping: the key already read moves
    /// one level down, and so does what follows.
    fn pair(&mut self) -> Result<(), TooDeep> {
        let Some(flow) = self.flows.last_mut() else {
            return Ok(());
        };
        if !flow.sequence || flow.pair {
            return Ok(());
        }
        flow.pair = true;
        if flow.entry > 0 {
            flow.entry += 1;
        }
        self.flow_depth += 1;
        let depth = self.depth();
        let flow = self.flows.last_mut().expect("checked above");
        // The pair's mapping is part of the entry too.
        flow.entry = flow.entry.max(depth);
        let entry = flow.entry;
        self.reached(entry)
    }

    // --- scalars and properties ---

    fn tag(&mut self) {
        self.advance();
        if self.at(0) == b'<' {
            // Verbatim: libyaml reads URI characters, `,[]` included, up to `>`.
            while !self.blankz_at(0) && self.at(0) != b'>' {
                self.advance();
            }
            if self.at(0) == b'>' {
                self.advance();
            }
            return;
        }
        // Shorthand: libyaml stops at the first character outside its URI set and then needs
        // a blank (or `,` in a flow). Stopping only at a blank or a flow start is never less
        // than it counts: `[`/`{` are counted here even where libyaml would fail on them.
        while !self.blankz_at(0) && !matches!(self.at(0), b'[' | b'{') {
            self.advance();
        }
    }

    fn quoted(&mut self, quote: u8) {
        self.advance();
        loop {
            if self.i >= self.b.len() || (self.column == 0 && self.document_marker()) {
                return;
            }
            let c = self.at(0);
            if quote == b'\'' && c == b'\'' && self.at(1) == b'\'' {
                self.advance();
                self.advance();
            } else if c == quote {
                self.advance();
                return;
            } else if quote == b'"' && c == b'\\' {
                self.advance();
                if self.break_at(0) {
                    self.advance_break();
                } else if self.i < self.b.len() {
                    self.advance();
                }
            } else if self.break_at(0) {
                self.advance_break();
            } else {
                self.advance();
            }
        }
    }

    /// libyaml's `scan_plain_scalar`: chunks of text separated by blanks and line breaks;
    /// in block context it continues on lines indented past the current collection.
    fn plain(&mut self) {
        let flow = !self.flows.is_empty();
        let min = self.indent() + 1;
        let mut leading_break = false;
        loop {
            if (self.column == 0 && self.document_marker()) || self.at(0) == b'#' {
                break;
            }
            while !self.blankz_at(0) {
                let c = self.at(0);
                let next = self.at(1);
                if flow && c == b':' && matches!(next, b',' | b'?' | b'[' | b']' | b'{' | b'}') {
                    return; // libyaml: "found unexpected ':'"
                }
                if (c == b':' && self.blankz_at(1))
                    || (flow && matches!(c, b',' | b'[' | b']' | b'{' | b'}'))
                {
                    break;
                }
                self.advance();
            }
            if !(self.blank_at(0) || self.break_at(0)) {
                break;
            }
            leading_break = false;
            while self.blank_at(0) || self.break_at(0) {
                if self.break_at(0) {
                    self.advance_break();
                    leading_break = true;
                } else {
                    self.advance();
                }
            }
            if !flow && (self.column as isize) < min {
                break;
            }
        }
        if leading_break {
            self.allowed = true;
        }
    }

    /// libyaml's `scan_block_scalar`: the header, then every line indented at least as far
    /// as the first one (and more than the collection it belongs to).
    fn block_scalar(&mut self) {
        self.advance();
        let mut increment = 0;
        for _ in 0..2 {
            match self.at(0) {
                b'+' | b'-' => self.advance(),
                d @ b'1'..=b'9' if increment == 0 => {
                    increment = (d - b'0') as isize;
                    self.advance();
                }
                _ => break,
            }
        }
        while self.blank_at(0) {
            self.advance();
        }
        if self.at(0) == b'#' {
            while !self.breakz_at(0) {
                self.advance();
            }
        }
        if !self.break_at(0) {
            return; // end of text, or libyaml's "did not find expected comment or line break"
        }
        self.advance_break();
        let parent = self.indent();
        let mut indent = match increment {
            0 => 0,
            n if parent >= 0 => parent + n,
            n => n,
        };
        let mut max_indent = 0;
        if !self.block_breaks(&mut indent, &mut max_indent) {
            return;
        }
        if indent == 0 {
            indent = max_indent.max(parent + 1).max(1);
        }
        while self.column as isize == indent && self.i < self.b.len() {
            while !self.breakz_at(0) {
                self.advance();
            }
            if self.i >= self.b.len() {
                return;
            }
            self.advance_break();
            if !self.block_breaks(&mut indent, &mut max_indent) {
                return;
            }
        }
    }

    /// Indentation and empty lines of a block scalar; false where libyaml fails (a tab).
    fn block_breaks(&mut self, indent: &mut isize, max_indent: &mut isize) -> bool {
        loop {
            while (*indent == 0 || (self.column as isize) < *indent) && self.at(0) == b' ' {
                self.advance();
            }
            *max_indent = (*max_indent).max(self.column as isize);
            if (*indent == 0 || (self.column as isize) < *indent) && self.at(0) == b'\t' {
                return false;
            }
            if !self.break_at(0) {
                return true;
            }
            self.advance_break();
        }
    }

    // --- characters ---

    /// libyaml's `scan_to_next_token`: blanks, comments and line breaks.
    fn skip_to_token(&mut self) {
        loop {
            if self.column == 0 && self.b[self.i..].starts_with("\u{feff}".as_bytes()) {
                self.advance();
            }
            // A tab may separate tokens, but not indent a block line (libyaml then fails).
            while self.at(0) == b' '
                || (self.at(0) == b'\t' && (!self.flows.is_empty() || !self.allowed))
            {
                self.advance();
            }
            if self.at(0) == b'#' {
                while !self.breakz_at(0) {
                    self.advance();
                }
            }
            if !self.break_at(0) {
                return;
            }
            self.advance_break();
            if self.flows.is_empty() {
                self.allowed = true;
            }
        }
    }

    fn document_marker(&self) -> bool {
        let b = &self.b[self.i..];
        (b.starts_with(b"---") || b.starts_with(b"...")) && self.blankz_at(3)
    }

    fn at(&self, k: usize) -> u8 {
        self.b.get(self.i + k).copied().unwrap_or(0)
    }

    fn blank_at(&self, k: usize) -> bool {
        matches!(self.at(k), b' ' | b'\t')
    }

    fn break_at(&self, k: usize) -> bool {
        let b = &self.b[(self.i + k).min(self.b.len())..];
        matches!(b.first(), Some(b'\r' | b'\n'))
            || b.starts_with(&[0xC2, 0x85])
            || b.starts_with(&[0xE2, 0x80, 0xA8])
            || b.starts_with(&[0xE2, 0x80, 0xA9])
    }

    fn breakz_at(&self, k: usize) -> bool {
        self.break_at(k) || self.at(k) == 0
    }

    fn blankz_at(&self, k: usize) -> bool {
        self.blank_at(k) || self.breakz_at(k)
    }

    /// One character (not a line break).
    fn advance(&mut self) {
        self.i += match self.at(0) {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        self.i = self.i.min(self.b.len());
        self.index += 1;
        self.column += 1;
    }

    /// One line break (`\r\n` is one).
    fn advance_break(&mut self) {
        if self.at(0) == b'\r' && self.at(1) == b'\n' {
            self.i += 1;
        }
        self.advance();
        self.line += 1;
        self.column = 0;
    }
}

fn is_anchor_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}
