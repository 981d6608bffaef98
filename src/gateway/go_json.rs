//! The JSON reading of Go's `encoding/json`, as etcd 3.5's gateway reads request bodies through
//! it (grpc-gateway v1's JSONPb → golang/protobuf 1.5 jsonpb → `encoding/json`): a parser that
//! fails where Go's scanner fails, with Go's messages (`invalid character 'x' looking for
//! beginning of value`, `unexpected EOF`, ...), Go's `json.Unmarshal` into the scalar types
//! jsonpb uses (`json: cannot unmarshal string into Go value of type bool`, ...), Go's
//! base64 (`illegal base64 data at input byte N`), and Go's string escaping for output.
//! Every parse is bounded by its input: one pass, nesting at most `MAX_DEPTH` deep.

/// Go's scanner refuses nesting deeper than 10000; so does this parser.
const MAX_DEPTH: usize = 10_000;

/// A parsed JSON value; strings and numbers keep their source text (jsonpb looks at it).
#[derive(Debug)]
pub enum J<'a> {
    Null,
    Bool(bool),
    /// The number's text.
    Num(&'a [u8]),
    /// The string's text, quotes included.
    Str(&'a [u8]),
    Arr(Vec<J<'a>>),
    /// Members in order; keys unescaped.
    Obj(Vec<(String, J<'a>)>),
}

impl J<'_> {
    /// Go's name for the JSON kind in `json: cannot unmarshal X into ...`.
    fn kind(&self) -> &'static str {
        match self {
            J::Null => "null",
            J::Bool(_) => "bool",
            J::Num(_) => "number",
            J::Str(_) => "string",
            J::Arr(_) => "array",
            J::Obj(_) => "object",
        }
    }
}

/// Why a parse stopped.
#[derive(Debug, PartialEq)]
pub enum Syntax {
    /// The input ended inside a value.
    Eof,
    /// Go's message for the first bad byte.
    Bad(String),
}

/// Reads the first JSON value of `buf` as Go's `json.Decoder.Decode` does. `Ok(None)`: only
/// whitespace. `Err(Syntax::Eof)` when the value is cut short; with `more` (the input may
/// continue) a number ending at the end of `buf` is cut short too. Returns the value and the
/// offset after it.
pub fn decode_next(buf: &[u8], more: bool) -> Result<Option<(J<'_>, usize)>, Syntax> {
    let mut p = Parser { b: buf, i: 0, depth: 0 };
    p.ws();
    if p.i == buf.len() {
        return if more { Err(Syntax::Eof) } else { Ok(None) };
    }
    let v = p.value()?;
    if more && matches!(v, J::Num(_)) && p.i == buf.len() {
        return Err(Syntax::Eof);
    }
    Ok(Some((v, p.i)))
}

/// Go's `json.Unmarshal` syntax check: exactly one value, whitespace around it allowed.
fn unmarshal_syntax(buf: &[u8]) -> Result<J<'_>, String> {
    let mut p = Parser { b: buf, i: 0, depth: 0 };
    let v = p.value().map_err(eof_as("unexpected end of JSON input"))?;
    p.ws();
    if let Some(&c) = buf.get(p.i) {
        return Err(bad(c, "after top-level value"));
    }
    Ok(v)
}

/// The message of a syntax error, with `eof` for a cut-short input.
pub fn eof_as(eof: &'static str) -> impl Fn(Syntax) -> String {
    move |s| match s {
        Syntax::Eof => eof.to_string(),
        Syntax::Bad(m) => m,
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

fn bad(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(c))
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Result<u8, Syntax> {
        self.b.get(self.i).copied().ok_or(Syntax::Eof)
    }

    fn next(&mut self) -> Result<u8, Syntax> {
        let c = self.peek()?;
        self.i += 1;
        Ok(c)
    }

    fn value(&mut self) -> Result<J<'a>, Syntax> {
        self.ws();
        match self.peek()? {
            b'{' => self.nested(Self::object),
            b'[' => self.nested(Self::array),
            b'"' => self.string().map(J::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true").map(|()| J::Bool(true)),
            b'f' => self.literal(b"false").map(|()| J::Bool(false)),
            b'n' => self.literal(b"null").map(|()| J::Null),
            c => Err(Syntax::Bad(bad(c, "looking for beginning of value"))),
        }
    }

    fn nested(&mut self, f: fn(&mut Self) -> Result<J<'a>, Syntax>) -> Result<J<'a>, Syntax> {
        if self.depth >= MAX_DEPTH {
            return Err(Syntax::Bad("exceeded max depth".into()));
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<J<'a>, Syntax> {
        self.i += 1;
        let mut members = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Ok(J::Obj(members));
        }
        loop {
            let c = self.peek()?;
            if c != b'"' {
                return Err(Syntax::Bad(bad(c, "looking for beginning of object key string")));
            }
            let key = String::from_utf8_lossy(&unquote(self.string()?)).into_owned();
            self.ws();
            let c = self.next()?;
            if c != b':' {
                return Err(Syntax::Bad(bad(c, "after object key")));
            }
            let v = self.value()?;
            members.push((key, v));
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Ok(J::Obj(members)),
                c => return Err(Syntax::Bad(bad(c, "after object key:value pair"))),
            }
        }
    }

    fn array(&mut self) -> Result<J<'a>, Syntax> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Ok(J::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.next()? {
                b',' => {}
                b']' => return Ok(J::Arr(items)),
                c => return Err(Syntax::Bad(bad(c, "after array element"))),
            }
        }
    }

    /// A string's text, quotes included.
    fn string(&mut self) -> Result<&'a [u8], Syntax> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.next()? {
                b'"' => return Ok(&self.b[start..self.i]),
                b'\\' => match self.next()? {
                    b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => {}
                    b'u' => {
                        for _ in 0..4 {
                            let c = self.next()?;
                            if !c.is_ascii_hexdigit() {
                                return Err(Syntax::Bad(bad(c, "in \\u hexadecimal character escape")));
                            }
                        }
                    }
                    c => return Err(Syntax::Bad(bad(c, "in string escape code"))),
                },
                c if c < 0x20 => return Err(Syntax::Bad(bad(c, "in string literal"))),
                _ => {}
            }
        }
    }

    fn digits(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
    }

    fn number(&mut self) -> Result<J<'a>, Syntax> {
        let start = self.i;
        if self.peek()? == b'-' {
            self.i += 1;
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return Err(Syntax::Bad(bad(c, "in numeric literal")));
            }
        }
        if self.next()? != b'0' {
            self.digits();
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return Err(Syntax::Bad(bad(c, "after decimal point in numeric literal")));
            }
            self.digits();
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek()?, b'+' | b'-') {
                self.i += 1;
            }
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return Err(Syntax::Bad(bad(c, "in exponent of numeric literal")));
            }
            self.digits();
        }
        Ok(J::Num(&self.b[start..self.i]))
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Syntax> {
        self.i += 1;
        for &want in &word[1..] {
            let c = self.next()?;
            if c != want {
                let w = std::str::from_utf8(word).unwrap_or("");
                return Err(Syntax::Bad(bad(c, &format!("in literal {w} (expecting {})", quote_char(want)))));
            }
        }
        Ok(())
    }
}

/// Go's `quoteChar`: a byte as the scanner's messages show it.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        _ => {
            let q = go_quote_rune(c as char);
            format!("'{q}'")
        }
    }
}

/// `strconv.Quote` of one rune, without the quotes (the runes a byte can be: U+0000–U+00FF).
fn go_quote_rune(r: char) -> String {
    match r {
        '\x07' => "\\a".into(),
        '\x08' => "\\b".into(),
        '\x0c' => "\\f".into(),
        '\n' => "\\n".into(),
        '\r' => "\\r".into(),
        '\t' => "\\t".into(),
        '\x0b' => "\\v".into(),
        '\\' => "\\\\".into(),
        '"' => "\\\"".into(),
        r if (r as u32) < 0x20 || r as u32 == 0x7f => format!("\\x{:02x}", r as u32),
        r if (0x80..=0xa0).contains(&(r as u32)) || r as u32 == 0xad => format!("\\u{:04x}", r as u32),
        r => r.to_string(),
    }
}

/// Go's `%q` of raw bytes (`strconv.Quote`): valid UTF-8 runes kept when printable, other
/// bytes as `\x..`.
pub fn go_quote_bytes(b: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in b.utf8_chunks() {
        for r in chunk.valid().chars() {
            if (r as u32) < 0x100 {
                out.push_str(&go_quote_rune(r));
            } else if r.is_control() || r == '\u{2028}' || r == '\u{2029}' {
                out.push_str(&format!("\\u{:04x}", r as u32));
            } else {
                out.push(r);
            }
        }
        for &x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out.push('"');
    out
}

/// The bytes a JSON string's text (quotes included) stands for; invalid UTF-8 and lone
/// surrogates become U+FFFD, as Go decodes them.
pub fn unquote(raw: &[u8]) -> Vec<u8> {
    let inner = &raw[1..raw.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    let hex4 = |s: &[u8]| u32::from_str_radix(std::str::from_utf8(s).unwrap_or("x"), 16).ok();
    while i < inner.len() {
        let c = inner[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = inner[i + 1];
        i += 2;
        let simple = match e {
            b'b' => Some(8u8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => Some(other),
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let hi = hex4(&inner[i..i + 4]).unwrap_or(0xfffd);
        i += 4;
        let mut ch = char::from_u32(hi);
        if (0xd800..0xdc00).contains(&hi) && inner.get(i) == Some(&b'\\') && inner.get(i + 1) == Some(&b'u') && i + 6 <= inner.len() {
            if let Some(lo) = hex4(&inner[i + 2..i + 6]).filter(|lo| (0xdc00..0xe000).contains(lo)) {
                ch = char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
                i += 6;
            }
        }
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.unwrap_or('\u{fffd}').encode_utf8(&mut buf).as_bytes());
    }
    // Go replaces invalid UTF-8 in decoded strings.
    match String::from_utf8(out) {
        Ok(s) => s.into_bytes(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned().into_bytes(),
    }
}

fn type_error(value: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {value} into Go value of type {go_type}")
}

/// `json.Unmarshal(raw, &x)` for the container types jsonpb reads first: an error unless `v`
/// is null or of `want`'s kind.
pub fn expect_kind(v: &J, want: &str, go_type: &str) -> Result<(), String> {
    match v {
        J::Null => Ok(()),
        v if v.kind() == want => Ok(()),
        v => Err(type_error(v.kind(), go_type)),
    }
}

/// jsonpb's `trimQuote`: a string's quotes dropped, its text left as it is.
fn trim_quote(raw: &[u8]) -> &[u8] {
    if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        &raw[1..raw.len() - 1]
    } else {
        raw
    }
}

/// jsonpb's `json.Unmarshal(trimQuote(raw), &x)` for numbers: a string's text is parsed
/// again as JSON, anything else is taken as it is.
fn trimmed<'a>(v: &'a J<'a>, reparsed: &'a mut Option<J<'a>>) -> Result<&'a J<'a>, String> {
    match v {
        J::Str(raw) => Ok(reparsed.insert(unmarshal_syntax(trim_quote(raw))?)),
        v => Ok(v),
    }
}

/// jsonpb's integer fields (`int32`, `int64` and their sint/sfixed kinds).
pub fn int(v: &J, bits: u32, go_type: &str) -> Result<i64, String> {
    let mut again = None;
    match trimmed(v, &mut again)? {
        J::Null => Ok(0),
        J::Num(t) => {
            let s = std::str::from_utf8(t).unwrap_or("");
            let n = s.parse::<i64>().ok().filter(|n| bits == 64 || (i32::MIN as i64..=i32::MAX as i64).contains(n));
            n.ok_or_else(|| type_error(&format!("number {s}"), go_type))
        }
        v => Err(type_error(v.kind(), go_type)),
    }
}

/// jsonpb's unsigned fields, as `int`.
pub fn uint(v: &J, bits: u32, go_type: &str) -> Result<u64, String> {
    let mut again = None;
    match trimmed(v, &mut again)? {
        J::Null => Ok(0),
        J::Num(t) => {
            let s = std::str::from_utf8(t).unwrap_or("");
            let n = s.parse::<u64>().ok().filter(|n| bits == 64 || *n <= u32::MAX as u64);
            n.ok_or_else(|| type_error(&format!("number {s}"), go_type))
        }
        v => Err(type_error(v.kind(), go_type)),
    }
}

/// jsonpb's float fields, as `int` (Go's `ParseFloat`; "NaN" and the infinities by name).
pub fn float(v: &J, go_type: &str) -> Result<f64, String> {
    match v {
        J::Str(b"\"NaN\"") => return Ok(f64::NAN),
        J::Str(b"\"Infinity\"") => return Ok(f64::INFINITY),
        J::Str(b"\"-Infinity\"") => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let mut again = None;
    match trimmed(v, &mut again)? {
        J::Null => Ok(0.0),
        J::Num(t) => {
            let s = std::str::from_utf8(t).unwrap_or("");
            s.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| type_error(&format!("number {s}"), go_type))
        }
        v => Err(type_error(v.kind(), go_type)),
    }
}

/// `json.Unmarshal(raw, &bool)`.
pub fn boolean(v: &J) -> Result<bool, String> {
    match v {
        J::Null => Ok(false),
        J::Bool(b) => Ok(*b),
        v => Err(type_error(v.kind(), "bool")),
    }
}

/// `json.Unmarshal(raw, &string)`.
pub fn string(v: &J) -> Result<String, String> {
    match v {
        J::Null => Ok(String::new()),
        J::Str(raw) => Ok(String::from_utf8_lossy(&unquote(raw)).into_owned()),
        v => Err(type_error(v.kind(), "string")),
    }
}

/// `json.Unmarshal(raw, &[]byte)`: a string, decoded as Go's `base64.StdEncoding`.
pub fn bytes(v: &J) -> Result<Vec<u8>, String> {
    match v {
        J::Null => Ok(Vec::new()),
        J::Str(raw) => base64_std(&unquote(raw)).map_err(|at| format!("illegal base64 data at input byte {at}")),
        v => Err(type_error(v.kind(), "[]uint8")),
    }
}

/// Go's `base64.StdEncoding.Decode` (padded, not strict; `\r` and `\n` skipped); the error is
/// the offset Go reports.
pub fn base64_std(src: &[u8]) -> Result<Vec<u8>, usize> {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let newline = |c: u8| c == b'\n' || c == b'\r';
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        let mut buf = [0u8; 4];
        let mut len = 4;
        let mut j = 0;
        let mut trailing_err = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(s) = sextet(c) {
                buf[j] = s;
                j += 1;
                continue;
            }
            if newline(c) {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    while si < src.len() && newline(src[si]) {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && newline(src[si]) {
                si += 1;
            }
            if si < src.len() {
                trailing_err = Some(si);
            }
            len = j;
            break;
        }
        let val = (buf[0] as u32) << 18 | (buf[1] as u32) << 12 | (buf[2] as u32) << 6 | buf[3] as u32;
        let three = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        out.extend_from_slice(&three[..len - 1]);
        if let Some(at) = trailing_err {
            return Err(at);
        }
    }
    Ok(out)
}

/// jsonpb's enum fields given as numbers: `json.Unmarshal(raw, &protoreflect.EnumNumber)`.
pub fn enum_number(v: &J) -> Result<i32, String> {
    const GO_TYPE: &str = "protoreflect.EnumNumber";
    match v {
        J::Null => Ok(0),
        J::Num(t) => {
            let s = std::str::from_utf8(t).unwrap_or("");
            s.parse::<i32>().map_err(|_| type_error(&format!("number {s}"), GO_TYPE))
        }
        v => Err(type_error(v.kind(), GO_TYPE)),
    }
}

/// Go's `json.Marshal` of a string (HTML-safe escaping, as Go's default).
pub fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' => {
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 0xf] as char);
            }
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 0xf] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match decode_next(body.as_bytes(), false) {
            Err(s) => eof_as("unexpected EOF")(s),
            Ok(v) => format!("ok {v:?}"),
        }
    }

    #[test]
    fn syntax_errors_read_as_gos() {
        assert_eq!(err("nonsense"), "invalid character 'o' in literal null (expecting 'u')");
        assert_eq!(err("{\"key\":\"Zm9v\""), "unexpected EOF");
        assert_eq!(err("garbage"), "invalid character 'g' looking for beginning of value");
        assert_eq!(err("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(err("{\"a\":1 2}"), "invalid character '2' after object key:value pair");
        assert_eq!(err("{1}"), "invalid character '1' looking for beginning of object key string");
        assert_eq!(err("[1,]"), "invalid character ']' looking for beginning of value");
        assert_eq!(err("\"a\nb\""), "invalid character '\\n' in string literal");
        assert_eq!(err("-x"), "invalid character 'x' in numeric literal");
        assert!(decode_next(b"  ", false).unwrap().is_none());
        assert_eq!(decode_next(b"12", true).unwrap_err(), Syntax::Eof);
    }

    #[test]
    fn scalars_read_as_jsonpb_reads_them() {
        assert_eq!(int(&J::Str(b"\"2\""), 64, "int64"), Ok(2));
        assert_eq!(int(&J::Str(b"\"x\""), 64, "int64").unwrap_err(), "invalid character 'x' looking for beginning of value");
        assert_eq!(int(&J::Num(b"1.5"), 64, "int64").unwrap_err(), "json: cannot unmarshal number 1.5 into Go value of type int64");
        assert_eq!(int(&J::Str(b"\"\""), 64, "int64").unwrap_err(), "unexpected end of JSON input");
        assert_eq!(boolean(&J::Str(b"\"true\"")).unwrap_err(), "json: cannot unmarshal string into Go value of type bool");
        assert_eq!(go_quote_bytes(b"\"BAD\""), "\"\\\"BAD\\\"\"");
    }

    #[test]
    fn base64_errors_are_gos_offsets() {
        assert_eq!(base64_std(b"YmFy"), Ok(b"bar".to_vec()));
        assert_eq!(base64_std(b"YmE="), Ok(b"ba".to_vec()));
        assert_eq!(base64_std(b"YmF"), Err(0));
        assert_eq!(base64_std(b"Zm9v_-"), Err(4));
        assert_eq!(base64_std(b"!!!"), Err(0));
        assert_eq!(base64_std(b"YQ==YQ=="), Err(4));
        assert_eq!(base64_std(b"YQ="), Err(3));
    }

    #[test]
    fn strings_are_escaped_as_go_marshals_them() {
        let mut s = String::new();
        write_string(&mut s, "a<b>&\"\\\n\u{1}");
        assert_eq!(s, "\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\u0001\"");
    }
}
