//! OPA's `strings.render_template(template, variables)`: Go's `text/template` run over the
//! variables object (OPA's `v1/topdown/template.go`).
//!
//! OPA converts the object through its Rego text into Go's `map[string]interface{}` with
//! `json.Number` numbers (a string type to `text/template`: `eq .n 1` is an error, `eq .n "1"`
//! is true, `printf "%d" .n` prints `%!d(json.Number=1)`), parses the template, executes it,
//! and replaces every `<no value>` in the output with `<undefined>`. That is what OPA 1.20.2
//! (the conformance engine's) does: a missing key is not an error there, whatever the older
//! `missingkey=error` source says, and even a literal `<no value>` in the text is replaced.
//! So this module is a lexer, a parser to a tree and an executor of Go's template
//! language, following `text/template` as of Go 1.26, which that OPA was built with
//! (`break`/`continue`, `else with`, `range` over integers), with Go's `fmt` for the
//! printing. docs/policies.md lists what still differs.
//!
//! Any error (syntax, unknown function, wrong types, …) fails the builtin, which the engines
//! turn into undefined, as in OPA. Hostile templates are bounded: nesting (of blocks,
//! parentheses and template calls), the number of execution steps, the output and the total
//! size of the strings built are limited, far below Go's own limits, so that a template
//! can neither exhaust the stack nor memory nor run for long.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use anyhow::{Result, anyhow, bail};
use regorus::Value;
use regorus::unstable::{Expr, Ref, Span};

use super::{Args, string};

/// Nesting of control blocks, parenthesised pipelines and `template` calls. Go allows
/// 100,000 template calls and 10,000 parentheses, which would overflow a Rust stack here.
const MAX_DEPTH: usize = 100;
/// Walked nodes, evaluated commands and range iterations.
const MAX_STEPS: u64 = 1_000_000;
/// The rendered text.
const MAX_OUTPUT: usize = 1 << 20;
/// Every string built while rendering (output included), so that variables holding large
/// `printf` results cannot pile up.
const MAX_BUILT: usize = 8 << 20;
/// The template text: its tokens and tree take several times its size.
const MAX_TEMPLATE: usize = 1 << 20;
/// Variables in scope at once. Lookups scan them (as Go's do), so the count bounds the cost
/// of each; real templates have a handful.
const MAX_VARS: usize = 1000;

pub(super) fn render_template(_: &Span, _: &[Ref<Expr>], args: Args<'_>, _: bool) -> Result<Value> {
    let name = "strings.render_template";
    let text = string(name, args, 0)?;
    let data = match args.get(1) {
        Some(value @ Value::Object(_)) => from_rego(value)?,
        other => bail!("{name}: operand 2 must be an object, got {other:?}"),
    };
    let out = render(text, data).map_err(|e| anyhow!("{name}: template: {e}"))?;
    Ok(Value::from(out.replace("<no value>", "<undefined>")))
}

/// The value Go sees after OPA's conversion. OPA goes through the Rego text of the object
/// and Go's JSON decoder, so a set or a non-string key anywhere is a decoding error.
fn from_rego(value: &Value) -> Result<V> {
    Ok(match value {
        Value::Null => V::Nil,
        Value::Bool(b) => V::Bool(*b),
        // regorus keeps no number literal, so `1.0` prints `1` where OPA keeps the text.
        Value::Number(_) => V::Num(value.to_string().into()),
        Value::String(s) => V::Str(s.as_ref().into()),
        Value::Array(items) => V::Arr(Rc::new(
            items.iter().map(from_rego).collect::<Result<Vec<_>>>()?,
        )),
        Value::Object(fields) => {
            let mut map = BTreeMap::new();
            for (key, value) in fields.iter() {
                let Value::String(key) = key else {
                    bail!("object keys must be strings for a template, got {key}");
                };
                map.insert(key.to_string(), from_rego(value)?);
            }
            V::Map(Rc::new(map))
        }
        other => bail!("{other} cannot be a template variable"),
    })
}

/// A Go value as `text/template` handles it.
#[derive(Clone, Debug)]
enum V {
    /// An invalid `reflect.Value`: a missing key, the result of a nil pipeline.
    Missing,
    /// A nil `interface{}` inside the data (JSON null), before a pipeline unwraps it.
    Nil,
    Bool(bool),
    Str(Rc<str>),
    /// `json.Number`: a string type with the number's text.
    Num(Rc<str>),
    Int(i64),
    /// A byte of a string, from `index`.
    Byte(u8),
    Float(f64),
    /// Only from an imaginary literal (`1i`): Go's `complex128`.
    Complex(f64, f64),
    Arr(Rc<Vec<V>>),
    Map(Rc<BTreeMap<String, V>>),
}

impl V {
    fn type_name(&self) -> &'static str {
        match self {
            V::Missing | V::Nil => "<nil>",
            V::Bool(_) => "bool",
            V::Str(_) => "string",
            V::Num(_) => "json.Number",
            V::Int(_) => "int",
            V::Byte(_) => "uint8",
            V::Float(_) => "float64",
            V::Complex(..) => "complex128",
            V::Arr(_) => "[]interface {}",
            V::Map(_) => "map[string]interface {}",
        }
    }

    fn is_nil(&self) -> bool {
        matches!(self, V::Missing | V::Nil)
    }

    /// Go's `isTrue`: the zero value of a type is false.
    fn truth(&self) -> bool {
        match self {
            V::Missing | V::Nil => false,
            V::Bool(b) => *b,
            V::Str(s) | V::Num(s) => !s.is_empty(),
            V::Int(i) => *i != 0,
            V::Byte(b) => *b != 0,
            V::Float(f) => *f != 0.0,
            V::Complex(re, im) => *re != 0.0 || *im != 0.0,
            V::Arr(a) => !a.is_empty(),
            V::Map(m) => !m.is_empty(),
        }
    }
}

/// What a pipeline does to a value held in an `interface{}`: a nil one becomes invalid.
fn unwrap(v: V) -> V {
    match v {
        V::Nil => V::Missing,
        v => v,
    }
}

// ---------------------------------------------------------------------------------------
// Lexer (Go's text/template/parse/lex.go, all at once instead of as a goroutine).

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Text(String),
    Left,
    Right,
    Space,
    Bool(bool),
    /// A printable ASCII character with no other meaning, such as the comma of a range.
    Char(char),
    /// A number or a character constant, as written.
    Number(String),
    /// A quoted or raw string, unquoted.
    Str(String),
    Ident(String),
    Kw(Kw),
    Nil,
    Var(String),
    Field(String),
    Dot,
    Pipe,
    LParen,
    RParen,
    Assign,
    Declare,
    Eof,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kw {
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// ` -}}` (any of Go's four space characters before the minus).
fn right_trim_at(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 4 && is_space(b[0] as char) && b[1] == b'-' && &b[2..4] == b"}}"
}

fn lex(input: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut pos = 0;
    // Whether the next text starts after a ` -}}`.
    let mut trim_next = false;
    loop {
        // Text up to the next action.
        let rest = &input[pos..];
        let at = rest.find("{{");
        let mut text = &rest[..at.unwrap_or(rest.len())];
        if trim_next {
            text = text.trim_start_matches(is_space);
            trim_next = false;
        }
        let Some(at) = at else {
            if !text.is_empty() {
                toks.push(Tok::Text(text.to_string()));
            }
            toks.push(Tok::Eof);
            return Ok(toks);
        };
        let after = pos + at + 2;
        let bytes = input.as_bytes();
        let trim_left = bytes.get(after) == Some(&b'-')
            && bytes.get(after + 1).is_some_and(|&c| is_space(c as char));
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            toks.push(Tok::Text(text.to_string()));
        }
        pos = after + if trim_left { 2 } else { 0 };
        if input[pos..].starts_with("/*") {
            let end = input[pos + 2..]
                .find("*/")
                .ok_or_else(|| "unclosed comment".to_string())?;
            pos += 2 + end + 2;
            if right_trim_at(&input[pos..]) {
                pos += 4;
                trim_next = true;
            } else if input[pos..].starts_with("}}") {
                pos += 2;
            } else {
                return Err("comment ends before closing delimiter".into());
            }
            continue;
        }
        toks.push(Tok::Left);
        let mut parens = 0usize;
        // Inside the action.
        loop {
            let rest = &input[pos..];
            if right_trim_at(rest) || rest.starts_with("}}") {
                if parens > 0 {
                    return Err("unclosed left paren".into());
                }
                let trim = right_trim_at(rest);
                pos += if trim { 4 } else { 2 };
                trim_next = trim;
                toks.push(Tok::Right);
                break;
            }
            let Some(c) = rest.chars().next() else {
                return Err("unclosed action".into());
            };
            let start = pos;
            pos += c.len_utf8();
            match c {
                c if is_space(c) => {
                    let mut n = 1;
                    while let Some(c) = input[pos..].chars().next().filter(|&c| is_space(c)) {
                        pos += c.len_utf8();
                        n += 1;
                    }
                    // The last space may be the start of a ` -}}`.
                    if right_trim_at(&input[pos - 1..]) {
                        pos -= 1;
                        n -= 1;
                    }
                    if n > 0 {
                        toks.push(Tok::Space);
                    }
                }
                '=' => toks.push(Tok::Assign),
                ':' => {
                    if !input[pos..].starts_with('=') {
                        return Err("expected :=".into());
                    }
                    pos += 1;
                    toks.push(Tok::Declare);
                }
                '|' => toks.push(Tok::Pipe),
                '"' => {
                    let end = closing_quote(input, pos, '"')
                        .ok_or_else(|| "unterminated quoted string".to_string())?;
                    toks.push(Tok::Str(unquote(&input[pos..end], '"')?));
                    pos = end + 1;
                }
                '`' => {
                    let end = input[pos..]
                        .find('`')
                        .ok_or_else(|| "unterminated raw quoted string".to_string())?;
                    // strconv.Unquote drops carriage returns from raw strings.
                    toks.push(Tok::Str(input[pos..pos + end].replace('\r', "")));
                    pos += end + 1;
                }
                '\'' => {
                    let end = closing_quote(input, pos, '\'')
                        .ok_or_else(|| "unterminated character constant".to_string())?;
                    toks.push(Tok::Number(input[start..=end].to_string()));
                    pos = end + 1;
                }
                '$' | '.' => {
                    if c == '.' && input[pos..].starts_with(|c: char| c.is_ascii_digit()) {
                        pos = scan_number(input, start)?;
                        toks.push(Tok::Number(input[start..pos].to_string()));
                        continue;
                    }
                    while let Some(c) = input[pos..].chars().next().filter(|&c| is_alnum(c)) {
                        pos += c.len_utf8();
                    }
                    if !at_terminator(&input[pos..]) {
                        return Err(format!("bad character in {}", &input[start..pos]));
                    }
                    let word = &input[start..pos];
                    toks.push(match word {
                        "." => Tok::Dot,
                        _ if c == '.' => Tok::Field(word[1..].to_string()),
                        _ => Tok::Var(word.to_string()),
                    });
                }
                '+' | '-' | '0'..='9' => {
                    pos = scan_number(input, start)?;
                    toks.push(Tok::Number(input[start..pos].to_string()));
                }
                c if is_alnum(c) => {
                    while let Some(c) = input[pos..].chars().next().filter(|&c| is_alnum(c)) {
                        pos += c.len_utf8();
                    }
                    if !at_terminator(&input[pos..]) {
                        return Err(format!("bad character after {}", &input[start..pos]));
                    }
                    toks.push(match &input[start..pos] {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        "block" => Tok::Kw(Kw::Block),
                        "break" => Tok::Kw(Kw::Break),
                        "continue" => Tok::Kw(Kw::Continue),
                        "define" => Tok::Kw(Kw::Define),
                        "else" => Tok::Kw(Kw::Else),
                        "end" => Tok::Kw(Kw::End),
                        "if" => Tok::Kw(Kw::If),
                        "range" => Tok::Kw(Kw::Range),
                        "template" => Tok::Kw(Kw::Template),
                        "with" => Tok::Kw(Kw::With),
                        word => Tok::Ident(word.to_string()),
                    });
                }
                '(' => {
                    parens += 1;
                    toks.push(Tok::LParen);
                }
                ')' => {
                    if parens == 0 {
                        return Err("unexpected right paren".into());
                    }
                    parens -= 1;
                    toks.push(Tok::RParen);
                }
                c if c.is_ascii_graphic() => toks.push(Tok::Char(c)),
                c => return Err(format!("unrecognized character in action: {c:?}")),
            }
        }
    }
}

fn at_terminator(rest: &str) -> bool {
    match rest.chars().next() {
        None => true,
        Some(c) => is_space(c) || ".,|:)(".contains(c) || rest.starts_with("}}"),
    }
}

/// Go's `scanNumber`: the extent of a number; Go checks its syntax when parsing it.
fn scan_number(input: &str, start: usize) -> Result<usize, String> {
    let b = input.as_bytes();
    let mut i = start;
    let accept = |i: &mut usize, set: &[u8]| {
        if *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
            true
        } else {
            false
        }
    };
    let run = |i: &mut usize, set: &[u8]| {
        while *i < b.len() && set.contains(&b[*i]) {
            *i += 1;
        }
    };
    accept(&mut i, b"+-");
    let mut digits: &[u8] = b"0123456789_";
    if accept(&mut i, b"0") {
        if accept(&mut i, b"xX") {
            digits = b"0123456789abcdefABCDEF_";
        } else if accept(&mut i, b"oO") {
            digits = b"01234567_";
        } else if accept(&mut i, b"bB") {
            digits = b"01_";
        }
    }
    run(&mut i, digits);
    if accept(&mut i, b".") {
        run(&mut i, digits);
    }
    if digits.len() == 11 && accept(&mut i, b"eE") {
        accept(&mut i, b"+-");
        run(&mut i, b"0123456789_");
    }
    if digits.len() == 23 && accept(&mut i, b"pP") {
        accept(&mut i, b"+-");
        run(&mut i, b"0123456789_");
    }
    accept(&mut i, b"i");
    if input[i..].starts_with(is_alnum) {
        return Err(format!("bad number syntax: {}", &input[start..i]));
    }
    Ok(i)
}

/// Where the quoted string or character constant starting at `from` (just after its opening
/// `quote`) ends: the next unescaped `quote` on the same line, as Go's lexer scans.
fn closing_quote(input: &str, from: usize, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in input[from..].char_indices() {
        match c {
            '\n' => return None,
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return Some(from + i),
            _ => {}
        }
    }
    None
}

/// Go's escapes in a quoted string or character constant (strconv.Unquote). `\x` and
/// octal escapes are bytes; bytes that are not UTF-8 become U+FFFD, as OPA's JSON output of
/// Go's string shows them (Go would still count them as one byte each, for `len`).
fn unquote(body: &str, quote: char) -> Result<String, String> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    let mut chars = body.chars().peekable();
    let bad = || format!("invalid syntax: {quote}{body}{quote}");
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c == quote {
                return Err(bad());
            }
            push(&mut out, c);
            continue;
        }
        let e = chars.next().ok_or_else(bad)?;
        let mut hex = |n: usize| -> Result<u32, String> {
            let mut v = 0;
            for _ in 0..n {
                let d = chars.next().and_then(|c| c.to_digit(16)).ok_or_else(bad)?;
                v = v * 16 + d;
            }
            Ok(v)
        };
        let c = match e {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' => '\\',
            '\'' | '"' if e == quote => e,
            'x' => {
                out.push(hex(2)? as u8);
                continue;
            }
            'u' => char::from_u32(hex(4)?).ok_or_else(bad)?,
            'U' => char::from_u32(hex(8)?).ok_or_else(bad)?,
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    v = v * 8 + chars.next().and_then(|c| c.to_digit(8)).ok_or_else(bad)?;
                }
                out.push(u8::try_from(v).map_err(|_| bad())?);
                continue;
            }
            _ => return Err(bad()),
        };
        push(&mut out, c);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

// ---------------------------------------------------------------------------------------
// Parser (Go's text/template/parse/parse.go).

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Option<Vec<Node>>),
    With(Pipe, Vec<Node>, Option<Vec<Node>>),
    Range(Pipe, Vec<Node>, Option<Vec<Node>>),
    Template(String, Option<Pipe>),
    Break,
    Continue,
}

#[derive(Debug)]
struct Pipe {
    decl: Vec<String>,
    is_assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug)]
enum Arg {
    Field(Vec<String>),
    /// `(pipeline).a.b` or `fn.a`.
    Chain(Box<Arg>, Vec<String>),
    Ident(String),
    /// `$x.a.b`: the variable then its fields.
    Var(Vec<String>),
    Dot,
    Nil,
    Bool(bool),
    /// The constant, or the error Go raises when executing it.
    Number(Result<V, String>),
    Str(String),
    Pipe(Box<Pipe>),
}

const FUNCS: &[&str] = &[
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

enum Item {
    Node(Node),
    End,
    /// `{{else}}`, or `{{else if`/`{{else with` with the keyword still to read.
    Else(Option<Kw>),
}

type Trees = BTreeMap<String, Rc<Vec<Node>>>;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    trees: Trees,
}

fn is_empty_tree(list: &[Node]) -> bool {
    list.iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim_matches(char::is_whitespace).is_empty()))
}

fn parse(text: &str) -> Result<Trees, String> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        depth: 0,
        trees: BTreeMap::new(),
    };
    let mut root = Vec::new();
    while p.peek() != &Tok::Eof {
        if p.peek() == &Tok::Left {
            let save = p.pos;
            p.next();
            if p.next_non_space() == Tok::Kw(Kw::Define) {
                p.definition()?;
                continue;
            }
            p.pos = save;
        }
        match p.text_or_action()? {
            Item::Node(n) => root.push(n),
            Item::End => return Err("unexpected {{end}}".into()),
            Item::Else(_) => return Err("unexpected {{else}}".into()),
        }
    }
    p.add("template".into(), root)?;
    Ok(p.trees)
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&Tok::Eof)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn next_non_space(&mut self) -> Tok {
        loop {
            let t = self.next();
            if t != Tok::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Tok {
        let t = self.next_non_space();
        self.pos -= 1;
        t
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<(), String> {
        let t = self.next_non_space();
        if t != want {
            return Err(format!("unexpected {t:?} in {context}"));
        }
        Ok(())
    }

    fn declare(&mut self, name: String) -> Result<(), String> {
        if self.vars.len() >= MAX_VARS {
            return Err(format!("more than {MAX_VARS} variables in scope"));
        }
        self.vars.push(name);
        Ok(())
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("template nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    /// Adds a parsed template; an empty body never replaces a non-empty one.
    fn add(&mut self, name: String, list: Vec<Node>) -> Result<(), String> {
        match self.trees.get(&name) {
            Some(old) if !is_empty_tree(old) => {
                if !is_empty_tree(&list) {
                    return Err(format!(
                        "template: multiple definition of template {name:?}"
                    ));
                }
            }
            _ => {
                self.trees.insert(name, Rc::new(list));
            }
        }
        Ok(())
    }

    /// A `define` or `block` body: a fresh variable scope, outside any range.
    fn sub_tree(&mut self, name: String, context: &str) -> Result<(), String> {
        let vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let range_depth = std::mem::take(&mut self.range_depth);
        self.enter()?;
        let (list, end) = self.item_list()?;
        self.depth -= 1;
        if !matches!(end, Item::End) {
            return Err(format!("unexpected {{{{else}}}} in {context}"));
        }
        self.vars = vars;
        self.range_depth = range_depth;
        self.add(name, list)
    }

    fn definition(&mut self) -> Result<(), String> {
        let Tok::Str(name) = self.next_non_space() else {
            return Err("expected a template name in define clause".into());
        };
        self.expect(Tok::Right, "define clause")?;
        self.sub_tree(name, "define")
    }

    fn item_list(&mut self) -> Result<(Vec<Node>, Item), String> {
        let mut list = Vec::new();
        while self.peek_non_space() != Tok::Eof {
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                end => return Ok((list, end)),
            }
        }
        Err("unexpected EOF".into())
    }

    fn text_or_action(&mut self) -> Result<Item, String> {
        match self.next_non_space() {
            Tok::Text(t) => Ok(Item::Node(Node::Text(t))),
            Tok::Left => self.action(),
            t => Err(format!("unexpected {t:?} in input")),
        }
    }

    fn action(&mut self) -> Result<Item, String> {
        match self.next_non_space() {
            Tok::Kw(Kw::Block) => self.block(),
            Tok::Kw(kw @ (Kw::Break | Kw::Continue)) => {
                self.expect(Tok::Right, "break or continue")?;
                if self.range_depth == 0 {
                    return Err("{{break}} or {{continue}} outside {{range}}".into());
                }
                Ok(Item::Node(if kw == Kw::Break {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            Tok::Kw(Kw::Else) => match self.peek_non_space() {
                Tok::Kw(kw @ (Kw::If | Kw::With)) => Ok(Item::Else(Some(kw))),
                _ => {
                    self.expect(Tok::Right, "else")?;
                    Ok(Item::Else(None))
                }
            },
            Tok::Kw(Kw::End) => {
                self.expect(Tok::Right, "end")?;
                Ok(Item::End)
            }
            Tok::Kw(kw @ (Kw::If | Kw::Range | Kw::With)) => Ok(Item::Node(self.control(kw)?)),
            Tok::Kw(Kw::Template) => {
                let Tok::Str(name) = self.next_non_space() else {
                    return Err("expected a template name in template clause".into());
                };
                let pipe = if self.peek_non_space() == Tok::Right {
                    self.next_non_space();
                    None
                } else {
                    Some(self.pipeline("template", &Tok::Right)?)
                };
                Ok(Item::Node(Node::Template(name, pipe)))
            }
            _ => {
                self.pos -= 1;
                Ok(Item::Node(Node::Action(
                    self.pipeline("command", &Tok::Right)?,
                )))
            }
        }
    }

    fn block(&mut self) -> Result<Item, String> {
        let Tok::Str(name) = self.next_non_space() else {
            return Err("expected a template name in block clause".into());
        };
        let pipe = self.pipeline("block", &Tok::Right)?;
        self.sub_tree(name.clone(), "block")?;
        Ok(Item::Node(Node::Template(name, Some(pipe))))
    }

    /// `if`, `range`, `with`, the keyword read. `else if` and `else with` nest a control
    /// in the else branch that takes the single `{{end}}`, as Go does.
    fn control(&mut self, kw: Kw) -> Result<Node, String> {
        let context = match kw {
            Kw::If => "if",
            Kw::Range => "range",
            _ => "with",
        };
        let mark = self.vars.len();
        self.enter()?;
        let pipe = self.pipeline(context, &Tok::Right)?;
        if kw == Kw::Range {
            self.range_depth += 1;
        }
        let (list, next) = self.item_list()?;
        if kw == Kw::Range {
            self.range_depth -= 1;
        }
        let else_list = match next {
            Item::End => None,
            Item::Else(Some(next_kw)) if next_kw == kw && kw != Kw::Range => {
                self.next_non_space();
                Some(vec![self.control(kw)?])
            }
            Item::Else(Some(_)) => {
                return Err(format!("unexpected keyword after else in {context}"));
            }
            Item::Else(None) => {
                let (else_list, next) = self.item_list()?;
                if !matches!(next, Item::End) {
                    return Err("expected end; found {{else}}".into());
                }
                Some(else_list)
            }
            Item::Node(_) => return Err("internal error: a list ended on a node".into()),
        };
        self.depth -= 1;
        self.vars.truncate(mark);
        Ok(match kw {
            Kw::If => Node::If(pipe, list, else_list),
            Kw::Range => Node::Range(pipe, list, else_list),
            _ => Node::With(pipe, list, else_list),
        })
    }

    fn pipeline(&mut self, context: &str, end: &Tok) -> Result<Pipe, String> {
        let mut pipe = Pipe {
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        'decls: loop {
            let save = self.pos;
            let Tok::Var(name) = self.next_non_space() else {
                self.pos = save;
                break;
            };
            match self.peek_non_space() {
                t @ (Tok::Assign | Tok::Declare) => {
                    self.next_non_space();
                    pipe.is_assign = t == Tok::Assign;
                    pipe.decl.push(name.clone());
                    self.declare(name)?;
                    break;
                }
                Tok::Char(',') => {
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.declare(name)?;
                    if context == "range" && pipe.decl.len() < 2 {
                        if let Tok::Var(_) | Tok::Right | Tok::RParen = self.peek_non_space() {
                            continue 'decls;
                        }
                        return Err("range can only initialize variables".into());
                    }
                    return Err(format!("too many declarations in {context}"));
                }
                _ => {
                    self.pos = save;
                    break;
                }
            }
        }
        loop {
            match self.next_non_space() {
                ref t if t == end => break,
                Tok::Bool(_)
                | Tok::Number(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Nil
                | Tok::Str(_)
                | Tok::Var(_)
                | Tok::LParen => {
                    self.pos -= 1;
                    pipe.cmds.push(self.command()?);
                }
                t => return Err(format!("unexpected {t:?} in {context}")),
            }
        }
        if pipe.cmds.is_empty() {
            return Err(format!("missing value for {context}"));
        }
        for (i, cmd) in pipe.cmds.iter().enumerate().skip(1) {
            if let Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str(_) = cmd[0] {
                return Err(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                ));
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> Result<Vec<Arg>, String> {
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(arg) = self.operand()? {
                args.push(arg);
            }
            match self.next() {
                Tok::Space => continue,
                Tok::Right | Tok::RParen => self.pos -= 1,
                Tok::Pipe => {}
                t => return Err(format!("unexpected {t:?} in operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err("empty command".into());
        }
        Ok(args)
    }

    fn operand(&mut self) -> Result<Option<Arg>, String> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if !matches!(self.peek(), Tok::Field(_)) {
            return Ok(Some(term));
        }
        let mut fields = Vec::new();
        while let Tok::Field(f) = self.peek().clone() {
            self.next();
            fields.push(f);
        }
        Ok(Some(match term {
            Arg::Field(mut idents) => {
                idents.extend(fields);
                Arg::Field(idents)
            }
            Arg::Var(mut idents) => {
                idents.extend(fields);
                Arg::Var(idents)
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil | Arg::Dot => {
                return Err("unexpected . after term".into());
            }
            other => Arg::Chain(Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>, String> {
        Ok(Some(match self.next_non_space() {
            Tok::Ident(name) => {
                if !FUNCS.contains(&name.as_str()) {
                    return Err(format!("function {name:?} not defined"));
                }
                Arg::Ident(name)
            }
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Var(name) => {
                if !self.vars.contains(&name) {
                    return Err(format!("undefined variable {name:?}"));
                }
                Arg::Var(vec![name])
            }
            Tok::Field(f) => Arg::Field(vec![f]),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Number(text) => Arg::Number(number(&text)?),
            Tok::LParen => {
                self.enter()?;
                let pipe = self.pipeline("parenthesized pipeline", &Tok::RParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(pipe))
            }
            Tok::Str(s) => Arg::Str(s),
            _ => {
                self.pos -= 1;
                return Ok(None);
            }
        }))
    }
}

/// Go's `newNumber` then `idealConstant`: the syntax decides int or float; a number Go
/// cannot represent is a parse error, one that overflows `int` an execution error.
fn number(text: &str) -> Result<Result<V, String>, String> {
    let bad = || format!("illegal number syntax: {text:?}");
    if let Some(body) = text.strip_prefix('\'') {
        let body = body.strip_suffix('\'').ok_or_else(bad)?;
        let s = unquote(body, '\'')?;
        let mut chars = s.chars();
        return match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(Ok(V::Int(i64::from(u32::from(c))))),
            _ => Err(format!("malformed character constant: {text}")),
        };
    }
    if let Some(imaginary) = text.strip_suffix('i') {
        // Go's lexer makes only pure imaginary literals: `1i`, `-2.5i`.
        let im = match parse_int(imaginary) {
            Some(i) if !imaginary.contains(['.', 'e', 'E', 'p', 'P']) => i as f64,
            _ => parse_float(imaginary).ok_or_else(bad)?,
        };
        return Ok(Ok(V::Complex(0.0, im)));
    }
    let int = parse_int(text);
    let is_float_syntax = text.contains(['.', 'e', 'E', 'p', 'P'])
        && !(text.len() > 2 && text[..2].eq_ignore_ascii_case("0x") && !text.contains(['p', 'P']));
    if let Some(i) = int
        && !is_float_syntax
    {
        return Ok(i64::try_from(i)
            .map(V::Int)
            .map_err(|_| format!("{text} overflows int")));
    }
    let f = parse_float(text).ok_or_else(bad)?;
    if is_float_syntax {
        Ok(Ok(V::Float(f)))
    } else {
        // Unreachable in practice: an integer literal that does not parse as one.
        Err(bad())
    }
}

/// strconv.ParseInt(text, 0, 64) widened (a uint64 is still an int constant to Go's
/// parser, then overflows `int`).
fn parse_int(text: &str) -> Option<i128> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d, true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d, true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..], true)
    } else {
        (10, lower.as_str(), false)
    };
    if !underscores_ok(digits, prefixed) {
        return None;
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    if v > i128::from(u64::MAX) {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// Go's rule: an underscore separates digits (or follows a base prefix).
fn underscores_ok(digits: &str, prefixed: bool) -> bool {
    let b = digits.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let before_ok = if i == 0 { prefixed } else { b[i - 1] != b'_' };
            let after_ok = i + 1 < b.len() && b[i + 1] != b'_';
            if !before_ok || !after_ok {
                return false;
            }
        }
    }
    true
}

/// Floats as strconv.ParseFloat takes Go's literals: decimal, or hexadecimal with a
/// binary exponent (`0x1.8p1`).
fn parse_float(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if let Some(hex) = body.strip_prefix("0x") {
        let f = parse_hex_float(hex)?;
        return Some(if lower.starts_with('-') { -f } else { f });
    }
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let mantissa = body.split('e').next().unwrap_or("");
    if !mantissa.split('.').all(|part| underscores_ok(part, false)) {
        return None;
    }
    let f: f64 = lower.replace('_', "").parse().ok()?;
    f.is_finite().then_some(f)
}

/// `h.hhhp±d` after the `0x`: the exponent is required, as in Go.
fn parse_hex_float(hex: &str) -> Option<f64> {
    let (mantissa, exp) = hex.split_once('p')?;
    if !mantissa
        .split('.')
        .enumerate()
        .all(|(i, part)| underscores_ok(part, i == 0))
    {
        return None;
    }
    let mantissa = mantissa.replace('_', "");
    let (int, frac) = mantissa.split_once('.').unwrap_or((&mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in int.chars().chain(frac.chars()) {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let exp: i32 = exp.replace('_', "").parse().ok()?;
    let f = value * 2f64.powi(exp.checked_sub(4 * i32::try_from(frac.len()).ok()?)?);
    f.is_finite().then_some(f)
}

// ---------------------------------------------------------------------------------------
// Executor (Go's text/template/exec.go and funcs.go).

enum Flow {
    Normal,
    Break,
    Continue,
}

struct State<'t> {
    trees: &'t Trees,
    vars: Vec<(String, V)>,
    out: String,
    steps: u64,
    depth: usize,
    built: usize,
}

type R<T> = Result<T, String>;

fn render(text: &str, data: V) -> R<String> {
    if text.len() > MAX_TEMPLATE {
        return Err(format!("template longer than {MAX_TEMPLATE} bytes"));
    }
    let trees = parse(text)?;
    let root = trees
        .get("template")
        .cloned()
        .ok_or_else(|| "no template".to_string())?;
    let mut s = State {
        trees: &trees,
        vars: vec![("$".into(), data.clone())],
        out: String::new(),
        steps: 0,
        depth: 0,
        built: 0,
    };
    s.walk_list(&data, &root)?;
    Ok(s.out)
}

impl State<'_> {
    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!("template execution exceeded {MAX_STEPS} steps"));
        }
        Ok(())
    }

    /// Counts a built string against the limit on all strings built.
    fn built(&mut self, len: usize) -> R<()> {
        self.built += len;
        if self.built > MAX_BUILT {
            return Err(format!("template built more than {MAX_BUILT} bytes"));
        }
        Ok(())
    }

    fn write(&mut self, text: &str) -> R<()> {
        if self.out.len() + text.len() > MAX_OUTPUT {
            return Err(format!("template output exceeds {MAX_OUTPUT} bytes"));
        }
        self.built(text.len())?;
        self.out.push_str(text);
        Ok(())
    }

    fn walk_list(&mut self, dot: &V, list: &[Node]) -> R<Flow> {
        for node in list {
            match self.walk(dot, node)? {
                Flow::Normal => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &V, node: &Node) -> R<Flow> {
        self.step()?;
        match node {
            Node::Text(t) => self.write(t)?,
            Node::Action(pipe) => {
                // Variables declared here persist to the end of the enclosing block.
                let v = self.pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    let mut text = String::new();
                    if let V::Missing = v {
                        text.push_str("<no value>");
                    } else {
                        fmt_value(&mut text, &v, &Spec::default(), 0)?;
                    }
                    self.write(&text)?;
                }
            }
            Node::If(pipe, list, else_list) | Node::With(pipe, list, else_list) => {
                let mark = self.vars.len();
                let v = self.pipeline(dot, pipe)?;
                let flow = if v.truth() {
                    let inner = if let Node::With(..) = node { &v } else { dot };
                    self.nested(|s| s.walk_list(inner, list))?
                } else if let Some(else_list) = else_list {
                    self.nested(|s| s.walk_list(dot, else_list))?
                } else {
                    Flow::Normal
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range(pipe, list, else_list) => {
                let mark = self.vars.len();
                let r = self.range(dot, pipe, list, else_list.as_deref());
                self.vars.truncate(mark);
                r?;
            }
            Node::Template(name, pipe) => {
                let tree = self
                    .trees
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("template {name:?} not defined"))?;
                let v = match pipe {
                    Some(pipe) => self.pipeline(dot, pipe)?,
                    None => V::Missing,
                };
                // No dynamic scoping: the called template sees only `$`.
                let vars = std::mem::replace(&mut self.vars, vec![("$".into(), v.clone())]);
                let r = self.nested(|s| s.walk_list(&v, &tree));
                self.vars = vars;
                r?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("exceeded maximum template depth ({MAX_DEPTH})"));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn range(&mut self, dot: &V, pipe: &Pipe, list: &[Node], else_list: Option<&[Node]>) -> R<()> {
        let v = self.pipeline(dot, pipe)?;
        let mark = self.vars.len();
        let n_decl = pipe.decl.len();
        let mut ran = false;
        let mut iteration = |s: &mut Self, index: V, elem: V| -> R<bool> {
            ran = true;
            s.step()?;
            // Go sets the top one or two variables of the stack: those the range declared
            // (or, for `$v = …`, whatever is on top).
            if n_decl > 0
                && let Some(slot) = mark.checked_sub(1).and_then(|i| s.vars.get_mut(i))
            {
                slot.1 = elem.clone();
            }
            if n_decl > 1
                && let Some(slot) = mark.checked_sub(2).and_then(|i| s.vars.get_mut(i))
            {
                slot.1 = index;
            }
            let flow = s.nested(|s| s.walk_list(&elem, list));
            s.vars.truncate(mark);
            Ok(matches!(flow?, Flow::Break))
        };
        match &v {
            V::Arr(items) => {
                for (i, elem) in items.iter().enumerate() {
                    if iteration(self, V::Int(i as i64), elem.clone())? {
                        break;
                    }
                }
            }
            V::Map(map) => {
                // Go's fmtsort orders string keys bytewise, as a BTreeMap does.
                for (k, elem) in map.iter() {
                    if iteration(self, V::Str(k.as_str().into()), elem.clone())? {
                        break;
                    }
                }
            }
            V::Int(n) => {
                if n_decl > 1 {
                    return Err(format!(
                        "can't use {n} to iterate over more than one variable"
                    ));
                }
                for i in 0..*n {
                    if iteration(self, V::Missing, V::Int(i))? {
                        break;
                    }
                }
            }
            V::Byte(n) => {
                if n_decl > 1 {
                    return Err(format!(
                        "can't use {n} to iterate over more than one variable"
                    ));
                }
                for i in 0..*n {
                    if iteration(self, V::Missing, V::Byte(i))? {
                        break;
                    }
                }
            }
            V::Missing => {}
            other => return Err(format!("range can't iterate over {}", sprint_v(other)?)),
        }
        if !ran && let Some(else_list) = else_list {
            self.nested(|s| s.walk_list(dot, else_list))?;
        }
        Ok(())
    }

    fn pipeline(&mut self, dot: &V, pipe: &Pipe) -> R<V> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(unwrap(self.command(dot, cmd, value)?));
        }
        let value = value.unwrap_or(V::Missing);
        for name in &pipe.decl {
            if pipe.is_assign {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| format!("undefined variable: {name}"))?;
                slot.1 = value.clone();
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn var(&mut self, name: &str) -> R<V> {
        let found = self.vars.iter().rev().position(|(n, _)| n == name);
        // The scan is work too.
        self.charge(found.unwrap_or(self.vars.len()) * 16)?;
        let at = found.ok_or_else(|| format!("undefined variable: {name}"))?;
        Ok(self.vars[self.vars.len() - 1 - at].1.clone())
    }

    /// Charges work proportional to `bytes` (comparing or copying) to the step budget,
    /// so that each step stays cheap whatever the size of the values.
    fn charge(&mut self, bytes: usize) -> R<()> {
        self.steps += (bytes / 256) as u64;
        self.step()
    }

    /// `final` is the value piped in from the previous command.
    fn command(&mut self, dot: &V, cmd: &[Arg], final_: Option<V>) -> R<V> {
        self.step()?;
        let has_args = cmd.len() > 1 || final_.is_some();
        let not_a_function = || -> R<()> {
            if has_args {
                return Err("can't give argument to non-function".into());
            }
            Ok(())
        };
        match &cmd[0] {
            Arg::Field(idents) => field_chain(dot.clone(), idents, has_args),
            Arg::Chain(node, idents) => {
                let receiver = self.arg(dot, node)?;
                field_chain(receiver, idents, has_args)
            }
            Arg::Ident(name) => self.call(dot, name, &cmd[1..], final_),
            Arg::Pipe(pipe) => {
                not_a_function()?;
                self.nested(|s| s.pipeline(dot, pipe))
            }
            Arg::Var(idents) => {
                let v = self.var(&idents[0])?;
                if idents.len() == 1 {
                    not_a_function()?;
                    Ok(v)
                } else {
                    field_chain(v, &idents[1..], has_args)
                }
            }
            other => {
                not_a_function()?;
                match other {
                    Arg::Nil => Err("nil is not a command".into()),
                    other => self.arg(dot, other),
                }
            }
        }
    }

    /// An argument to a function (all of the builtins take `any` or `reflect.Value`).
    fn arg(&mut self, dot: &V, arg: &Arg) -> R<V> {
        match arg {
            Arg::Dot => Ok(dot.clone()),
            Arg::Nil => Ok(V::Missing),
            Arg::Bool(b) => Ok(V::Bool(*b)),
            Arg::Number(n) => n.clone(),
            Arg::Str(s) => Ok(V::Str(s.as_str().into())),
            Arg::Field(idents) => field_chain(dot.clone(), idents, false),
            Arg::Var(idents) => {
                let v = self.var(&idents[0])?;
                field_chain(v, &idents[1..], false)
            }
            Arg::Pipe(pipe) => self.nested(|s| s.pipeline(dot, pipe)),
            Arg::Ident(name) => self.call(dot, name, &[], None),
            Arg::Chain(node, idents) => {
                let receiver = self.arg(dot, node)?;
                field_chain(receiver, idents, false)
            }
        }
    }

    fn call(&mut self, dot: &V, name: &str, args: &[Arg], final_: Option<V>) -> R<V> {
        let n = args.len() + usize::from(final_.is_some());
        let want = |fixed: usize, variadic: bool| -> R<()> {
            if variadic && n < fixed {
                return Err(format!(
                    "wrong number of args for {name}: want at least {fixed} got {n}"
                ));
            }
            if !variadic && n != fixed {
                return Err(format!(
                    "wrong number of args for {name}: want {fixed} got {n}"
                ));
            }
            Ok(())
        };
        if name == "and" || name == "or" {
            want(1, true)?;
            // Short-circuit: later arguments are not evaluated.
            let mut v = V::Missing;
            for arg in args {
                v = self.arg(dot, arg)?;
                if v.truth() == (name == "or") {
                    return Ok(v);
                }
            }
            return Ok(final_.unwrap_or(v));
        }
        let mut argv = Vec::with_capacity(n);
        if name == "printf" {
            want(1, true)?;
        }
        for (i, arg) in args.iter().enumerate() {
            // printf's format is a `string` parameter: no other type converts to it.
            if name == "printf" && i == 0 {
                let v = match arg {
                    Arg::Str(s) => V::Str(s.as_str().into()),
                    Arg::Bool(_) | Arg::Number(_) | Arg::Nil => {
                        return Err("printf: format must be a string".into());
                    }
                    other => self.arg(dot, other)?,
                };
                argv.push(v);
                continue;
            }
            argv.push(self.arg(dot, arg)?);
        }
        argv.extend(final_);
        if matches!(name, "eq" | "ne" | "lt" | "le" | "gt" | "ge") {
            // Comparing strings reads them.
            self.charge(argv.iter().map(|v| str_of(v).len()).sum())?;
        }
        let result = match name {
            "not" => {
                want(1, false)?;
                V::Bool(!argv[0].truth())
            }
            "len" => {
                want(1, false)?;
                V::Int(match &argv[0] {
                    V::Str(s) | V::Num(s) => s.len(),
                    V::Arr(a) => a.len(),
                    V::Map(m) => m.len(),
                    other => {
                        return Err(format!(
                            "error calling len: len of type {}",
                            other.type_name()
                        ));
                    }
                } as i64)
            }
            "index" => {
                want(1, true)?;
                index(&argv[0], &argv[1..])?
            }
            "slice" => {
                want(1, true)?;
                let v = slice(&argv[0], &argv[1..])?;
                self.charge(match &v {
                    V::Str(s) | V::Num(s) => s.len(),
                    V::Arr(a) => a.len() * 16,
                    _ => 0,
                })?;
                v
            }
            "eq" => {
                want(1, true)?;
                V::Bool(eq(&argv[0], &argv[1..])?)
            }
            "ne" => {
                want(2, false)?;
                V::Bool(!eq(&argv[0], &argv[1..])?)
            }
            "lt" | "le" | "gt" | "ge" => {
                want(2, false)?;
                let less = lt(&argv[0], &argv[1])?;
                V::Bool(match name {
                    "lt" => less,
                    "ge" => !less,
                    _ => {
                        let le = less || eq(&argv[0], &argv[1..])?;
                        if name == "le" { le } else { !le }
                    }
                })
            }
            "print" | "println" | "printf" => {
                let mut out = String::new();
                match name {
                    "print" => sprint(&mut out, &argv)?,
                    "println" => {
                        for (i, v) in argv.iter().enumerate() {
                            if i > 0 {
                                out.push(' ');
                            }
                            fmt_value(&mut out, v, &Spec::default(), 0)?;
                        }
                        out.push('\n');
                    }
                    _ => {
                        let V::Str(format) = &argv[0] else {
                            return Err(format!(
                                "wrong type for value; expected string; got {}",
                                argv[0].type_name()
                            ));
                        };
                        sprintf(&mut out, format, &argv[1..])?;
                    }
                }
                self.built(out.len())?;
                V::Str(out.into())
            }
            "html" | "js" | "urlquery" => {
                let text = eval_args(&argv)?;
                let out = match name {
                    "html" => html_escape(&text),
                    "js" => js_escape(&text),
                    _ => query_escape(&text),
                };
                self.built(text.len() + out.len())?;
                V::Str(out.into())
            }
            "call" => {
                want(1, true)?;
                // Data decoded from JSON holds no functions.
                return Err(match &argv[0] {
                    v if v.is_nil() => "error calling call: call of nil".into(),
                    v => format!("error calling call: non-function of type {}", v.type_name()),
                });
            }
            _ => return Err(format!("{name:?} is not a defined function")),
        };
        Ok(result)
    }
}

/// `.a.b.c` from a receiver. A missing key gives no value (Go's default `missingkey`), and
/// so does a field of no value; a field of a JSON null is an error, as in Go.
fn field_chain(mut receiver: V, idents: &[String], has_args: bool) -> R<V> {
    for (i, name) in idents.iter().enumerate() {
        receiver = match receiver {
            V::Missing => V::Missing,
            V::Nil => return Err(format!("nil pointer evaluating interface {{}}.{name}")),
            V::Map(map) => {
                if has_args && i + 1 == idents.len() {
                    return Err(format!("{name} is not a method but has arguments"));
                }
                map.get(name).cloned().unwrap_or(V::Missing)
            }
            other => {
                return Err(format!(
                    "can't evaluate field {name} in type {}",
                    other.type_name()
                ));
            }
        };
    }
    Ok(receiver)
}

fn index_arg(index: &V, len: usize) -> R<usize> {
    let x = match index {
        V::Int(i) => *i,
        V::Byte(b) => i64::from(*b),
        v if v.is_nil() => {
            return Err("error calling index: cannot index slice/array with nil".into());
        }
        v => {
            return Err(format!(
                "cannot index slice/array with type {}",
                v.type_name()
            ));
        }
    };
    if x < 0 || x as u64 > len as u64 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn index(item: &V, indexes: &[V]) -> R<V> {
    let mut item = item.clone();
    if let V::Missing | V::Nil = item {
        return Err("error calling index: index of untyped nil".into());
    }
    for index in indexes {
        item = match &item {
            V::Nil => return Err("error calling index: index of nil pointer".into()),
            V::Arr(a) => {
                let x = index_arg(index, a.len())?;
                a.get(x)
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {x}"))?
            }
            V::Str(s) | V::Num(s) => {
                let x = index_arg(index, s.len())?;
                V::Byte(
                    *s.as_bytes()
                        .get(x)
                        .ok_or_else(|| format!("index out of range: {x}"))?,
                )
            }
            V::Map(m) => match index {
                V::Str(k) => m.get(&**k).cloned().unwrap_or(V::Nil),
                v if v.is_nil() => return Err("value is nil; should be of type string".into()),
                v => {
                    return Err(format!(
                        "value has type {}; should be string",
                        v.type_name()
                    ));
                }
            },
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn slice(item: &V, indexes: &[V]) -> R<V> {
    if item.is_nil() {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    // Go slices up to the capacity, which JSON decoding can leave above the length; here
    // the capacity is the length.
    let len = match item {
        V::Str(s) | V::Num(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        V::Arr(a) => a.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0, len, len];
    for (i, index) in indexes.iter().enumerate() {
        idx[i] = index_arg(index, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        V::Str(s) | V::Num(s) => {
            // Go slices bytes; a cut inside a character would be invalid UTF-8, which a
            // Rego string cannot hold.
            let part = s
                .get(idx[0]..idx[1])
                .ok_or_else(|| "slice splits a UTF-8 character".to_string())?;
            if let V::Num(_) = item {
                V::Num(part.into())
            } else {
                V::Str(part.into())
            }
        }
        V::Arr(a) => V::Arr(Rc::new(a.get(idx[0]..idx[1]).unwrap_or_default().to_vec())),
        _ => return Err(format!("can't slice item of type {}", item.type_name())),
    })
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    Complex,
    Str,
    Invalid,
}

fn kind(v: &V) -> Kind {
    match v {
        V::Bool(_) => Kind::Bool,
        V::Int(_) => Kind::Int,
        V::Byte(_) => Kind::Uint,
        V::Float(_) => Kind::Float,
        V::Complex(..) => Kind::Complex,
        V::Str(_) | V::Num(_) => Kind::Str,
        _ => Kind::Invalid,
    }
}

fn int_of(v: &V) -> i128 {
    match v {
        V::Int(i) => i128::from(*i),
        V::Byte(b) => i128::from(*b),
        _ => 0,
    }
}

fn str_of(v: &V) -> &str {
    match v {
        V::Str(s) | V::Num(s) => s,
        _ => "",
    }
}

/// Go's `eq`: true if the first argument equals any of the others.
fn eq(a: &V, others: &[V]) -> R<bool> {
    let a = unwrap(a.clone());
    if others.is_empty() {
        return Err("error calling eq: missing argument for comparison".into());
    }
    let k1 = kind(&a);
    for b in others {
        let b = unwrap(b.clone());
        let k2 = kind(&b);
        let truth = if k1 != k2 {
            match (k1, k2) {
                (Kind::Int, Kind::Uint) | (Kind::Uint, Kind::Int) => int_of(&a) == int_of(&b),
                _ if !a.is_nil() && !b.is_nil() => {
                    return Err("error calling eq: incompatible types for comparison".into());
                }
                _ => false,
            }
        } else {
            match k1 {
                Kind::Bool => matches!((&a, &b), (V::Bool(x), V::Bool(y)) if x == y),
                Kind::Int | Kind::Uint => int_of(&a) == int_of(&b),
                Kind::Float => matches!((&a, &b), (V::Float(x), V::Float(y)) if x == y),
                Kind::Complex => {
                    matches!((&a, &b), (V::Complex(r1, i1), V::Complex(r2, i2)) if r1 == r2 && i1 == i2)
                }
                Kind::Str => str_of(&a) == str_of(&b),
                Kind::Invalid => {
                    let same_type = std::mem::discriminant(&a) == std::mem::discriminant(&b);
                    if !a.is_nil() && !b.is_nil() && !same_type {
                        return Err("error calling eq: non-comparable types".into());
                    }
                    if a.is_nil() || b.is_nil() {
                        a.is_nil() == b.is_nil()
                    } else {
                        return Err("error calling eq: non-comparable type".into());
                    }
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn lt(a: &V, b: &V) -> R<bool> {
    let (a, b) = (unwrap(a.clone()), unwrap(b.clone()));
    let (k1, k2) = (kind(&a), kind(&b));
    if k1 == Kind::Invalid || k2 == Kind::Invalid {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return match (k1, k2) {
            (Kind::Int, Kind::Uint) | (Kind::Uint, Kind::Int) => Ok(int_of(&a) < int_of(&b)),
            _ => Err("incompatible types for comparison".into()),
        };
    }
    match (&a, &b) {
        (V::Bool(_) | V::Complex(..), _) => Err("invalid type for comparison".into()),
        (V::Float(x), V::Float(y)) => Ok(x < y),
        _ if k1 == Kind::Str => Ok(str_of(&a) < str_of(&b)),
        _ => Ok(int_of(&a) < int_of(&b)),
    }
}

/// funcs.go's `evalArgs` for html, js and urlquery: one string as is, else `fmt.Sprint`
/// with nil shown as `<no value>`.
fn eval_args(args: &[V]) -> R<String> {
    if let [V::Str(s)] = args {
        return Ok(s.to_string());
    }
    let shown: Vec<V> = args
        .iter()
        .map(|v| {
            if v.is_nil() {
                V::Str("<no value>".into())
            } else {
                v.clone()
            }
        })
        .collect();
    let mut out = String::new();
    sprint(&mut out, &shown)?;
    Ok(out)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `unicode.IsPrint`, near enough: graphic characters and the ASCII space.
fn is_print(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'))
}

fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if c.is_ascii() || is_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Go's fmt, for the values a template can hold.

#[derive(Default, Clone)]
struct Spec {
    verb: char,
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
    /// `%#v`: Go syntax.
    sharp_v: bool,
}

fn check_len(out: &str) -> R<()> {
    if out.len() > MAX_OUTPUT {
        return Err(format!("formatted text exceeds {MAX_OUTPUT} bytes"));
    }
    Ok(())
}

fn sprint_v(v: &V) -> R<String> {
    let mut out = String::new();
    fmt_value(&mut out, v, &Spec::default(), 0)?;
    Ok(out)
}

/// `fmt.Sprint`: a space between operands when neither is a string (a json.Number is one).
fn sprint(out: &mut String, args: &[V]) -> R<()> {
    for (i, v) in args.iter().enumerate() {
        let is_string = |v: &V| matches!(v, V::Str(_) | V::Num(_));
        if i > 0 && !is_string(v) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        fmt_value(out, v, &Spec::default(), 0)?;
        check_len(out)?;
    }
    Ok(())
}

/// Go's `tooLarge`: widths and precisions beyond a million are refused.
const MAX_WIDTH: i64 = 1_000_000;

/// Go's `parsenum`: digits from `i`; an absurd number gives up on the rest of the format.
fn parse_num(b: &[u8], mut i: usize, end: usize) -> (i64, bool, usize) {
    let mut num = 0i64;
    let mut is_num = false;
    while i < end && b[i].is_ascii_digit() {
        if num > MAX_WIDTH {
            return (0, false, end);
        }
        num = num * 10 + i64::from(b[i] - b'0');
        is_num = true;
        i += 1;
    }
    (num, is_num, i)
}

/// Go's `intFromArg`: a `*` width or precision.
fn int_from_arg(args: &[V], arg_num: usize) -> (i64, bool, usize) {
    match args.get(arg_num) {
        None => (0, false, arg_num),
        Some(v) => match v {
            V::Int(_) | V::Byte(_) => {
                let n = int_of(v) as i64;
                if n.abs() > MAX_WIDTH {
                    (0, false, arg_num + 1)
                } else {
                    (n, true, arg_num + 1)
                }
            }
            _ => (0, false, arg_num + 1),
        },
    }
}

/// `fmt.Sprintf`, following Go's `doPrintf` (explicit `[n]` argument indexes included).
fn sprintf(out: &mut String, format: &str, args: &[V]) -> R<()> {
    let b = format.as_bytes();
    let end = b.len();
    let mut arg_num = 0usize;
    let mut reordered = false;
    let mut i = 0;
    // Go's `argNumber`: an optional `[n]` at `i`.
    let arg_number = |arg_num: usize, i: usize, reordered: &mut bool, good: &mut bool| {
        if i >= end || b[i] != b'[' {
            return (arg_num, i, false);
        }
        *reordered = true;
        let close = b[i..].iter().position(|&c| c == b']');
        match close {
            Some(c) if c >= 2 => {
                let (n, ok, newi) = parse_num(b, i + 1, i + c);
                if ok && newi == i + c && n >= 1 && (n as usize) <= args.len() {
                    return ((n - 1) as usize, i + c + 1, true);
                }
                *good = false;
                (arg_num, i + c + 1, ok && newi == i + c)
            }
            Some(c) => {
                *good = false;
                (arg_num, i + c + 1, false)
            }
            None => {
                *good = false;
                (arg_num, i + 1, false)
            }
        }
    };
    while i < end {
        let last = i;
        while i < end && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&format[last..i]);
        if i >= end {
            break;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < end {
            match b[i] {
                b'#' => spec.sharp = true,
                b'0' => spec.zero = !spec.minus,
                b'+' => spec.plus = true,
                b'-' => {
                    spec.minus = true;
                    spec.zero = false;
                }
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut good = true;
        let mut after_index;
        (arg_num, i, after_index) = arg_number(arg_num, i, &mut reordered, &mut good);
        if i < end && b[i] == b'*' {
            i += 1;
            let (w, ok, n) = int_from_arg(args, arg_num);
            arg_num = n;
            if !ok {
                out.push_str("%!(BADWIDTH)");
            } else if w < 0 {
                spec.width = Some(w.unsigned_abs() as usize);
                spec.minus = true;
                spec.zero = false;
            } else {
                spec.width = Some(w as usize);
            }
            after_index = false;
        } else {
            let (w, is_num, newi) = parse_num(b, i, end);
            i = newi;
            if is_num {
                spec.width = Some(w as usize);
                if after_index {
                    good = false;
                }
            }
        }
        if i + 1 < end && b[i] == b'.' {
            i += 1;
            if after_index {
                good = false;
            }
            (arg_num, i, after_index) = arg_number(arg_num, i, &mut reordered, &mut good);
            if i < end && b[i] == b'*' {
                i += 1;
                let (p, ok, n) = int_from_arg(args, arg_num);
                arg_num = n;
                if ok && p >= 0 {
                    spec.prec = Some(p as usize);
                } else {
                    out.push_str("%!(BADPREC)");
                }
                after_index = false;
            } else {
                let (p, is_num, newi) = parse_num(b, i, end);
                i = newi;
                spec.prec = Some(if is_num { p as usize } else { 0 });
            }
        }
        if !after_index {
            (arg_num, i, _) = arg_number(arg_num, i, &mut reordered, &mut good);
        }
        let Some(verb) = format.get(i..).and_then(|rest| rest.chars().next()) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        spec.verb = verb;
        if verb == 'v' {
            // `%#v` is Go syntax and `%+v` struct-field syntax (nothing here has fields):
            // neither `#` nor `+` is a flag there.
            spec.sharp_v = spec.sharp;
            spec.plus = false;
            spec.sharp = false;
        }
        if verb == '%' {
            // A percent takes no operand and ignores width and precision.
            out.push('%');
        } else if !good {
            let _ = write!(out, "%!{verb}(BADINDEX)");
        } else if let Some(arg) = args.get(arg_num) {
            arg_num += 1;
            fmt_value(out, arg, &spec, 0)?;
        } else {
            let _ = write!(out, "%!{verb}(MISSING)");
        }
        check_len(out)?;
    }
    if !reordered && arg_num < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, v) in args[arg_num..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", v.type_name());
            fmt_value(out, v, &Spec::default(), 0)?;
            check_len(out)?;
        }
        out.push(')');
    }
    Ok(())
}

/// Pads to the width. Go pads with zeros for the `0` flag whatever the operand; for a
/// number the zeros go after its sign.
fn pad(out: &mut String, text: &str, spec: &Spec, numeric: bool) {
    let n = text.chars().count();
    let width = spec.width.unwrap_or(0);
    if n >= width {
        out.push_str(text);
        return;
    }
    let fill = width - n;
    if spec.minus {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero {
        let (sign, digits) = match text.chars().next() {
            Some(c @ ('+' | '-' | ' ')) if numeric => (Some(c), &text[1..]),
            _ => (None, text),
        };
        out.extend(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(text);
    }
}

fn bad_verb(out: &mut String, v: &V, verb: char) -> R<()> {
    let _ = write!(out, "%!{verb}(");
    if v.is_nil() {
        out.push_str("<nil>");
    } else {
        let _ = write!(out, "{}=", v.type_name());
        fmt_value(out, v, &Spec::default(), 0)?;
    }
    out.push(')');
    Ok(())
}

/// One operand under one verb, as Go's `fmt` prints it; `depth` > 0 inside a slice or map.
fn fmt_value(out: &mut String, v: &V, spec: &Spec, depth: usize) -> R<()> {
    check_len(out)?;
    // Go takes widths and precisions up to ten million; the output could not hold them.
    if spec.width.max(spec.prec).unwrap_or(0) > MAX_OUTPUT {
        return Err(format!("width or precision exceeds {MAX_OUTPUT}"));
    }
    let verb = if spec.verb == '\0' { 'v' } else { spec.verb };
    if verb == 'T' {
        pad(out, v.type_name(), spec, false);
        return Ok(());
    }
    if spec.sharp_v {
        return go_syntax(out, v, depth);
    }
    match v {
        V::Missing | V::Nil => {
            if verb == 'v' || depth > 0 {
                pad(out, "<nil>", spec, false);
            } else {
                bad_verb(out, v, verb)?;
            }
        }
        V::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, spec, false),
            _ => bad_verb(out, v, verb)?,
        },
        // A json.Number is a Stringer: string verbs print its text.
        V::Str(s) | V::Num(s) => match verb {
            'v' | 's' => {
                let text = match spec.prec {
                    Some(p) => s.chars().take(p).collect::<String>(),
                    None => s.to_string(),
                };
                pad(out, &text, spec, false);
            }
            'q' => {
                let text: String = match spec.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.to_string(),
                };
                let quoted = if spec.sharp && can_backquote(&text) {
                    format!("`{text}`")
                } else {
                    go_quote(&text, spec.plus)
                };
                pad(out, &quoted, spec, false);
            }
            'x' | 'X' => {
                let mut text = String::new();
                for (i, b) in s.bytes().enumerate() {
                    if spec.space && i > 0 {
                        text.push(' ');
                    }
                    let _ = if verb == 'x' {
                        write!(text, "{b:02x}")
                    } else {
                        write!(text, "{b:02X}")
                    };
                }
                pad(out, &text, spec, false);
            }
            _ => bad_verb(out, v, verb)?,
        },
        V::Int(_) | V::Byte(_) => {
            let i = int_of(v);
            let digits = match verb {
                'v' | 'd' => i.unsigned_abs().to_string(),
                'b' => format!("{:b}", i.unsigned_abs()),
                'o' | 'O' => format!("{:o}", i.unsigned_abs()),
                'x' => format!("{:x}", i.unsigned_abs()),
                'X' => format!("{:X}", i.unsigned_abs()),
                'c' => {
                    let c = u32::try_from(i)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\u{FFFD}');
                    pad(out, &c.to_string(), spec, false);
                    return Ok(());
                }
                'q' => {
                    let c = u32::try_from(i)
                        .ok()
                        .and_then(char::from_u32)
                        .unwrap_or('\u{FFFD}');
                    pad(out, &go_quote_rune(c, spec.plus), spec, false);
                    return Ok(());
                }
                'U' => {
                    let mut text = format!("U+{:04X}", i.max(0));
                    let c = u32::try_from(i).ok().and_then(char::from_u32);
                    if let Some(c) = c.filter(|&c| spec.sharp && is_print(c)) {
                        let _ = write!(text, " '{c}'");
                    }
                    pad(out, &text, spec, false);
                    return Ok(());
                }
                _ => return bad_verb(out, v, verb),
            };
            let digits = match spec.prec {
                // Go prints nothing for a zero under a zero precision.
                Some(0) if i == 0 => String::new(),
                Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
                _ => digits,
            };
            let prefix = match (spec.sharp, verb) {
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, 'o') if !digits.starts_with('0') => "0",
                (_, 'O') => "0o",
                (true, 'b') => "0b",
                _ => "",
            };
            let sign = if i < 0 {
                "-"
            } else if spec.plus {
                "+"
            } else if spec.space {
                " "
            } else {
                ""
            };
            // With a precision, the `0` flag pads with spaces.
            let mut spec = spec.clone();
            spec.zero &= spec.prec.is_none();
            pad(out, &format!("{sign}{prefix}{digits}"), &spec, true);
        }
        V::Float(f) => {
            let text = match verb {
                'v' => fmt_g(*f, spec.prec, 'e'),
                'g' => fmt_g(*f, spec.prec, 'e'),
                'G' => fmt_g(*f, spec.prec, 'E'),
                'e' | 'E' => fmt_e(*f, spec.prec.unwrap_or(6), verb),
                'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f),
                'x' | 'X' => fmt_hex_float(*f, spec.prec, verb == 'X'),
                'b' => fmt_binary_float(*f),
                _ => return bad_verb(out, v, verb),
            };
            let text = if spec.plus && !f.is_sign_negative() {
                format!("+{text}")
            } else if spec.space && !f.is_sign_negative() {
                format!(" {text}")
            } else {
                text
            };
            pad(out, &text, spec, true);
        }
        V::Complex(re, im) => {
            if !"vbgGxXfFeE".contains(verb) {
                return bad_verb(out, v, verb);
            }
            // Go prints both parts with the verb, the imaginary one always signed.
            out.push('(');
            fmt_value(out, &V::Float(*re), spec, depth)?;
            let mut signed = spec.clone();
            signed.plus = true;
            fmt_value(out, &V::Float(*im), &signed, depth)?;
            out.push_str("i)");
        }
        V::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, item, spec, depth + 1)?;
            }
            out.push(']');
        }
        V::Map(map) => {
            out.push_str("map[");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, &V::Str(k.as_str().into()), spec, depth + 1)?;
                out.push(':');
                fmt_value(out, item, spec, depth + 1)?;
            }
            out.push(']');
        }
    }
    Ok(())
}

/// The shortest (or `prec`-digit) decimal digits of `f` and its decimal exponent.
fn digits_exp(f: f64, prec: Option<usize>) -> (String, i32) {
    let e = match prec {
        None => format!("{:e}", f.abs()),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f.abs()),
    };
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let mut digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp.parse().unwrap_or(0))
}

fn exp_suffix(exp: i32, e: char) -> String {
    format!(
        "{e}{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    )
}

/// strconv's `%e` with `prec` decimals.
fn fmt_e(f: f64, prec: usize, e: char) -> String {
    if !f.is_finite() {
        return fmt_special(f);
    }
    let s = format!("{:.*e}", prec, f);
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    format!("{mantissa}{}", exp_suffix(exp.parse().unwrap_or(0), e))
}

/// `%#v`, Go syntax, for the types a template holds (widths are not applied).
fn go_syntax(out: &mut String, v: &V, depth: usize) -> R<()> {
    check_len(out)?;
    match v {
        // A nil inside a slice or map is a nil `interface {}`.
        V::Missing | V::Nil if depth > 0 => out.push_str("interface {}(nil)"),
        V::Missing | V::Nil => out.push_str("<nil>"),
        V::Str(s) | V::Num(s) => out.push_str(&go_quote(s, false)),
        V::Byte(b) => {
            let _ = write!(out, "0x{b:x}");
        }
        V::Arr(items) => {
            out.push_str("[]interface {}{");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                go_syntax(out, item, depth + 1)?;
            }
            out.push('}');
        }
        V::Map(map) => {
            out.push_str("map[string]interface {}{");
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&go_quote(k, false));
                out.push(':');
                go_syntax(out, item, depth + 1)?;
            }
            out.push('}');
        }
        // Booleans, ints, floats and complex numbers print as with `%v`.
        other => fmt_value(out, other, &Spec::default(), depth)?,
    }
    Ok(())
}

/// strconv's `%x` of a float: `0x1.8p+00`, the mantissa's hex digits rounded (half to
/// even) to the precision if one is given, else as few as exact.
fn fmt_hex_float(f: f64, prec: Option<usize>, upper: bool) -> String {
    if !f.is_finite() {
        return fmt_special(f);
    }
    let bits = f.abs().to_bits();
    let (mut mant, mut exp) = match ((bits >> 52) & 0x7ff) as i32 {
        0 if bits == 0 => (0u64, 0i32),
        0 => (bits & ((1 << 52) - 1), -1022),
        e => ((bits & ((1 << 52) - 1)) | (1 << 52), e - 1023),
    };
    // Subnormals are normalised, so that the leading digit is 1.
    while mant != 0 && mant & (1 << 52) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    let mut lead = mant >> 52;
    let mut frac = mant & ((1 << 52) - 1);
    let digits = match prec {
        Some(p) if p < 13 => {
            // Round the whole mantissa, leading digit included (it is the last digit kept
            // for a zero precision).
            let shift = (13 - p) * 4;
            let rem = mant & ((1u64 << shift) - 1);
            let half = 1u64 << (shift - 1);
            let mut kept = mant >> shift;
            if rem > half || (rem == half && kept & 1 == 1) {
                kept += 1;
            }
            lead = kept >> (p * 4);
            frac = kept & ((1u64 << (p * 4)) - 1);
            if p == 0 {
                String::new()
            } else {
                format!("{frac:0p$x}")
            }
        }
        Some(p) => format!("{frac:013x}{}", "0".repeat(p - 13)),
        None => format!("{frac:013x}").trim_end_matches('0').to_string(),
    };
    if lead == 2 {
        lead = 1;
        exp += 1;
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let point = if digits.is_empty() { "" } else { "." };
    let text = format!("{sign}0x{lead}{point}{digits}{}", exp_suffix(exp, 'p'));
    if upper { text.to_uppercase() } else { text }
}

/// strconv's `%b` of a float: the integer mantissa and binary exponent.
fn fmt_binary_float(f: f64) -> String {
    let bits = f.abs().to_bits();
    let (mant, exp) = match ((bits >> 52) & 0x7ff) as i32 {
        0 => (bits & ((1 << 52) - 1), -1074),
        e => ((bits & ((1 << 52) - 1)) | (1 << 52), e - 1075),
    };
    let sign = if f.is_sign_negative() { "-" } else { "" };
    format!(
        "{sign}{mant}p{}{}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    )
}

fn fmt_special(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// strconv's `%g`: shortest digits (or `prec` significant ones), in exponent form when the
/// exponent is below -4 or at least the precision (6 for the shortest form, which `%v`
/// uses: `1e+06`).
fn fmt_g(f: f64, prec: Option<usize>, e: char) -> String {
    if !f.is_finite() {
        return fmt_special(f);
    }
    let (digits, exp) = digits_exp(f, prec);
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let eprec = match prec {
        None => 6,
        Some(p) if (p.max(1) as i32) > nd && nd >= dp => nd,
        Some(p) => p.max(1) as i32,
    };
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if exp < -4 || exp >= eprec {
        let rest = &digits[1..];
        let point = if rest.is_empty() { "" } else { "." };
        return format!("{sign}{}{point}{rest}{}", &digits[..1], exp_suffix(exp, e));
    }
    if dp <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-dp) as usize))
    } else if nd <= dp {
        format!("{sign}{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!(
            "{sign}{}.{}",
            &digits[..dp as usize],
            &digits[dp as usize..]
        )
    }
}

/// strconv.Quote, or QuoteToASCII for `%+q`.
fn go_quote(s: &str, ascii: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        quote_char(&mut out, c, '"', ascii);
    }
    out.push('"');
    out
}

fn go_quote_rune(c: char, ascii: bool) -> String {
    let mut out = String::from("'");
    quote_char(&mut out, c, '\'', ascii);
    out.push('\'');
    out
}

/// strconv.CanBackquote, for `%#q`.
fn can_backquote(s: &str) -> bool {
    s.chars()
        .all(|c| c != '`' && c != '\u{FEFF}' && (c == '\t' || !c.is_control()))
}

fn quote_char(out: &mut String, c: char, quote: char, ascii: bool) {
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if is_print(c) && (!ascii || c.is_ascii()) => out.push(c),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(template: &str, data: serde_json::Value) -> R<String> {
        let value = from_rego(&Value::from(data)).map_err(|e| e.to_string())?;
        render(template, value).map(|s| s.replace("<no value>", "<undefined>"))
    }

    #[test]
    fn renders_the_basics() {
        let data = serde_json::json!({"name": "ann", "a": [1, 2], "o": {"b": 2, "a": 1}});
        assert_eq!(run("Hello {{.name}}", data.clone()).unwrap(), "Hello ann");
        assert_eq!(
            run("{{range $i, $v := .a}}{{$i}}={{$v}} {{end}}", data.clone()).unwrap(),
            "0=1 1=2 "
        );
        assert_eq!(run("{{.o}}", data.clone()).unwrap(), "map[a:1 b:2]");
        assert_eq!(run("{{- \" x \" -}}  \n", data.clone()).unwrap(), " x ");
        assert_eq!(run("{{.missing}}", data).unwrap(), "<undefined>");
    }

    #[test]
    fn recursive_templates_stop_at_the_depth_limit() {
        let t = r#"{{define "r"}}x{{template "r" .}}{{end}}{{template "r" .}}"#;
        let e = run(t, serde_json::json!({})).unwrap_err();
        assert!(e.contains("depth"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for (open, close) in [("{{if true}}", "{{end}}"), ("{{with 1}}", "{{end}}")] {
            let t = format!("{}{}", open.repeat(100_000), close.repeat(100_000));
            assert!(run(&t, serde_json::json!({})).is_err());
        }
        let t = format!("{{{{{}1{}}}}}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(run(&t, serde_json::json!({})).is_err());
        let t = format!("{{{{{}}}}}", "print (".repeat(50_000) + &")".repeat(50_000));
        assert!(run(&t, serde_json::json!({})).is_err());
    }

    #[test]
    fn huge_ranges_and_outputs_are_cut_short() {
        let e = run("{{range 1000000000}}{{end}}", serde_json::json!({})).unwrap_err();
        assert!(e.contains("steps"), "{e}");
        let e = run(
            "{{range 100000}}xxxxxxxxxxxxxxxxxxxxxxxx{{end}}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(e.contains("output"), "{e}");
        let e = run(
            r#"{{printf "%999999d%999999d" 1 2}}"#,
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(e.contains("bytes"), "{e}");
        // Strings doubled at each level: stopped by the limit on built strings.
        let mut t = String::from(r#"{{$a := printf "%999999d" 1}}"#);
        for _ in 0..40 {
            t.push_str(r#"{{$a = printf "%s%s" $a $a}}"#);
        }
        assert!(run(&t, serde_json::json!({})).is_err());
        let mut t = String::new();
        for i in 0..100 {
            t.push_str(&format!("{{{{$v{i} := printf \"%999999d\" 1}}}}"));
        }
        let e = run(&t, serde_json::json!({})).unwrap_err();
        assert!(e.contains("built"), "{e}");
        // A range inside a range inside a range: the step budget bounds the product.
        let e = run(
            "{{range 1000}}{{range 1000}}{{range 1000}}{{end}}{{end}}{{end}}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(e.contains("steps"), "{e}");
    }

    #[test]
    fn work_on_large_values_counts_against_the_step_budget() {
        // A megabyte string compared a million times would be a trillion byte reads.
        let t = r#"{{$s := printf "%999999d" 1}}{{range 1000000}}{{if eq $s $s}}{{end}}{{end}}"#;
        let e = run(t, serde_json::json!({})).unwrap_err();
        assert!(e.contains("steps"), "{e}");
        let t = r#"{{$s := printf "%999999d" 1}}{{range 1000000}}{{slice $s 1}}{{end}}"#;
        assert!(run(t, serde_json::json!({})).is_err());
        // Variables: at most MAX_VARS in scope, each lookup charged for its scan.
        let many: String = (0..MAX_VARS + 1)
            .map(|i| format!("{{{{$v{i} := 1}}}}"))
            .collect();
        let e = run(&many, serde_json::json!({})).unwrap_err();
        assert!(e.contains("variables"), "{e}");
        let mut t: String = (0..MAX_VARS - 1)
            .map(|i| format!("{{{{$v{i} := 1}}}}"))
            .collect();
        t.push_str("{{range 1000000}}{{$}}{{end}}");
        let e = run(&t, serde_json::json!({})).unwrap_err();
        assert!(e.contains("steps"), "{e}");
        let e = run(&"x".repeat(MAX_TEMPLATE + 1), serde_json::json!({})).unwrap_err();
        assert!(e.contains("longer"), "{e}");
    }

    #[test]
    fn the_deepest_allowed_nesting_fits_a_small_stack() {
        // Policies run on request threads; 100 levels must fit well within their stacks
        // even in a debug build.
        let worker = std::thread::Builder::new().stack_size(1 << 20).spawn(|| {
            let t = r#"{{define "r"}}{{if .}}{{template "r" (slice . 1)}}{{end}}{{end}}{{template "r" .a}}ok"#;
            let a: Vec<u32> = (0..48).collect();
            let ok = run(t, serde_json::json!({ "a": a }));
            let parens = format!("{{{{{}1{}}}}}", "(".repeat(99), ")".repeat(99));
            let ifs = format!("{}x{}", "{{if 1}}".repeat(99), "{{end}}".repeat(99));
            (ok, run(&parens, serde_json::json!({})), run(&ifs, serde_json::json!({})))
        });
        let (ok, parens, ifs) = worker.unwrap().join().unwrap();
        assert_eq!(ok.unwrap(), "ok");
        assert_eq!(parens.unwrap(), "1");
        assert_eq!(ifs.unwrap(), "x");
    }

    #[test]
    fn hostile_syntax_errors_do_not_panic() {
        for t in [
            "{{",
            "{{.",
            "{{$",
            "{{\"",
            "{{'",
            "{{`",
            "{{/*",
            "{{(",
            "{{)}}",
            "{{-",
            "{{ -}}",
            "{{1e}}",
            "{{0x}}",
            "{{'ab'}}",
            "{{\"\\x\"}}",
            "{{else}}",
            "{{end}}",
            "{{range}}",
            "{{define}}",
            "{{template}}",
            "{{block \"x\"}}",
            "{{$x := }}",
            "{{.a.}}",
            "{{é}}",
            "{{.é}}",
            "{{\u{0}}}",
            "{{9223372036854775808}}",
            "{{18446744073709551616}}",
            "{{printf \"%\"}}",
            "{{printf \"%*d\" 1}}",
            "{{printf \"%.*d\" \"x\" 1}}",
            "{{index \"é\" 0}}{{slice \"é\" 1}}",
            "{{break}}",
            "{{range 1}}{{else}}{{break}}{{end}}",
        ] {
            let _ = run(t, serde_json::json!({"a": 1}));
        }
    }
}
