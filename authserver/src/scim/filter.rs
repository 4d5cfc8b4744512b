//! The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2):
//! parsed into a tree the query layer turns into SQL and PATCH applies to
//! a resource. Operators, `and`/`or`/`not` and literals are
//! case-insensitive; `not` binds tighter than `and`, `and` than `or`;
//! parentheses group. Attribute names are resolved against the resource's
//! schema by the caller, not here.

use serde_json::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

/// `[urn:…:]name[.sub]` as written; `uri` is the schema URN when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: Op,
        value: Value,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some value of the multi-valued `attr` matches
    /// `filter`, whose paths name `attr`'s sub-attributes.
    Has {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// A PATCH operation's `path`: an attribute, or the values of a
/// multi-valued one that match a filter (and then maybe one
/// sub-attribute of them).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// `attr[filter].sub`.
    pub sub: Option<String>,
}

/// Why a filter or path does not parse: a message naming where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    /// A word: an attribute path, an operator or a keyword literal.
    Word(String),
    Str(String),
    Number(Value),
}

fn tokens(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
            }
            '"' => {
                // A JSON string: its escapes are JSON's.
                let mut end = None;
                let mut escaped = false;
                chars.next();
                for (i, c) in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        end = Some(i);
                        break;
                    }
                }
                let end = end.ok_or_else(|| {
                    SyntaxError(format!("the string at position {at} is not closed"))
                })?;
                let s: String = serde_json::from_str(&text[at..=end]).map_err(|_| {
                    SyntaxError(format!("the string at position {at} has a bad escape"))
                })?;
                out.push(Token::Str(s));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let mut end = at;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E') {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let number: serde_json::Number = text[at..end]
                    .parse()
                    .map_err(|_| SyntaxError(format!("`{}` is not a number", &text[at..end])))?;
                out.push(Token::Number(Value::Number(number)));
            }
            c if c.is_ascii_alphabetic() || c == '$' => {
                let mut end = at;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '$') {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(text[at..end].to_owned()));
            }
            other => {
                return Err(SyntaxError(format!(
                    "unexpected `{other}` at position {at}"
                )));
            }
        }
    }
    Ok(out)
}

/// Splits `[urn:…:]name[.sub]`. A URN is everything up to its last `:`
/// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`
/// has URN `…:2.0:User`, name `manager`, sub `value`).
pub fn attr_path(word: &str) -> Result<AttrPath, SyntaxError> {
    let (uri, rest) = if word.len() > 4 && word[..4].eq_ignore_ascii_case("urn:") {
        let colon = word
            .rfind(':')
            .ok_or_else(|| SyntaxError(format!("`{word}` names no attribute")))?;
        (Some(word[..colon].to_owned()), &word[colon + 1..])
    } else {
        (None, word)
    };
    let (name, sub) = match rest.split_once('.') {
        Some((name, sub)) => (name, Some(sub)),
        None => (rest, None),
    };
    let valid = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$'))
    };
    if !valid(name) || sub.is_some_and(|s| !valid(s)) {
        return Err(SyntaxError(format!("`{word}` is not an attribute path")));
    }
    Ok(AttrPath {
        uri,
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), SyntaxError> {
        match self.next() {
            Some(t) if &t == want => Ok(()),
            Some(t) => Err(SyntaxError(format!("expected {what}, found {}", shown(&t)))),
            None => Err(SyntaxError(format!("expected {what}, found the end"))),
        }
    }

    /// `or` of `and`s.
    fn or(&mut self) -> Result<Filter, SyntaxError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, SyntaxError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, SyntaxError> {
        if self.keyword("not") {
            self.at += 1;
            self.expect(&Token::Open, "`(` after `not`")?;
            let inner = self.or()?;
            self.expect(&Token::Close, "`)`")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Token::Open) => {
                let inner = self.or()?;
                self.expect(&Token::Close, "`)`")?;
                Ok(inner)
            }
            Some(Token::Word(word)) => {
                let path = attr_path(&word)?;
                if self.peek() == Some(&Token::OpenBracket) {
                    self.at += 1;
                    let inner = self.or()?;
                    self.expect(&Token::CloseBracket, "`]`")?;
                    return Ok(Filter::Has {
                        attr: path,
                        filter: Box::new(inner),
                    });
                }
                self.comparison(path)
            }
            Some(t) => Err(SyntaxError(format!(
                "expected an attribute, found {}",
                shown(&t)
            ))),
            None => Err(SyntaxError("expected an attribute, found the end".into())),
        }
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, SyntaxError> {
        let op_word = match self.next() {
            Some(Token::Word(w)) => w,
            Some(t) => {
                return Err(SyntaxError(format!(
                    "expected an operator after `{}`, found {}",
                    path.name,
                    shown(&t)
                )));
            }
            None => {
                return Err(SyntaxError(format!(
                    "expected an operator after `{}`",
                    path.name
                )));
            }
        };
        if op_word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = Op::parse(&op_word)
            .ok_or_else(|| SyntaxError(format!("`{op_word}` is not an operator")))?;
        let value = match self.next() {
            Some(Token::Str(s)) => Value::String(s),
            Some(Token::Number(n)) => n,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            Some(t) => {
                return Err(SyntaxError(format!(
                    "expected a value after `{op_word}`, found {}",
                    shown(&t)
                )));
            }
            None => {
                return Err(SyntaxError(format!("expected a value after `{op_word}`")));
            }
        };
        Ok(Filter::Compare { path, op, value })
    }
}

fn shown(t: &Token) -> String {
    match t {
        Token::Open => "`(`".into(),
        Token::Close => "`)`".into(),
        Token::OpenBracket => "`[`".into(),
        Token::CloseBracket => "`]`".into(),
        Token::Word(w) => format!("`{w}`"),
        Token::Str(s) => format!("\"{s}\""),
        Token::Number(n) => format!("`{n}`"),
    }
}

/// Parses a `filter` parameter.
pub fn parse(text: &str) -> Result<Filter, SyntaxError> {
    let mut p = Parser {
        tokens: tokens(text)?,
        at: 0,
    };
    if p.tokens.is_empty() {
        return Err(SyntaxError("the filter is empty".into()));
    }
    let filter = p.or()?;
    match p.next() {
        None => Ok(filter),
        Some(t) => Err(SyntaxError(format!(
            "unexpected {} after a complete filter",
            shown(&t)
        ))),
    }
}

/// Parses a PATCH `path`.
pub fn parse_path(text: &str) -> Result<PatchPath, SyntaxError> {
    let trimmed = text.trim();
    let Some(open) = trimmed.find('[') else {
        return Ok(PatchPath {
            attr: attr_path(trimmed)?,
            filter: None,
            sub: None,
        });
    };
    let close = trimmed
        .rfind(']')
        .ok_or_else(|| SyntaxError(format!("`{trimmed}`: `[` without `]`")))?;
    let sub = match &trimmed[close + 1..] {
        "" => None,
        rest => {
            let sub = rest
                .strip_prefix('.')
                .ok_or_else(|| SyntaxError(format!("`{trimmed}`: expected `.` after `]`")))?;
            attr_path(sub)?;
            Some(sub.to_owned())
        }
    };
    Ok(PatchPath {
        attr: attr_path(&trimmed[..open])?,
        filter: Some(parse(&trimmed[open + 1..close])?),
        sub,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn ap(name: &str) -> AttrPath {
        attr_path(name).unwrap()
    }

    fn eq(name: &str, value: Value) -> Filter {
        Filter::Compare {
            path: ap(name),
            op: Op::Eq,
            value,
        }
    }

    #[test]
    fn the_rfc_examples_parse() {
        let examples = [
            r#"userName Eq "john""#,
            r#"name.familyName co "O'Malley""#,
            r#"userName sw "J""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            "title pr",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            r#"title pr and userType eq "Employee""#,
            r#"title pr or userType eq "Intern""#,
            r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        ];
        for e in examples {
            parse(e).unwrap_or_else(|err| panic!("{e}: {err}"));
        }
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let f = parse(r#"a eq 1 or b eq 2 and not (c eq 3)"#).unwrap();
        assert_eq!(
            f,
            Filter::Or(
                Box::new(eq("a", json!(1))),
                Box::new(Filter::And(
                    Box::new(eq("b", json!(2))),
                    Box::new(Filter::Not(Box::new(eq("c", json!(3))))),
                )),
            )
        );
        let grouped = parse(r#"(a eq 1 or b eq 2) and c eq true"#).unwrap();
        assert!(matches!(grouped, Filter::And(_, _)), "{grouped:?}");
    }

    #[test]
    fn uris_values_and_value_paths() {
        let f = parse(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m-1""#,
        )
        .unwrap();
        let Filter::Compare { path, .. } = f else {
            panic!()
        };
        assert_eq!(
            path.uri.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(
            (path.name.as_str(), path.sub.as_deref()),
            ("manager", Some("value"))
        );

        assert_eq!(parse("active eq TRUE").unwrap(), eq("active", json!(true)));
        assert_eq!(parse("x eq null").unwrap(), eq("x", Value::Null));
        assert_eq!(
            parse("n ge -1.5e2").unwrap(),
            Filter::Compare {
                path: ap("n"),
                op: Op::Ge,
                value: json!(-150.0)
            }
        );
        assert_eq!(
            parse(r#"s eq "a\"b\\c\u00e9""#).unwrap(),
            eq("s", json!("a\"b\\cé"))
        );

        let Filter::Has { attr, filter } =
            parse(r#"emails[type eq "work" and primary eq true]"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(attr.name, "emails");
        assert!(matches!(*filter, Filter::And(_, _)));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        for (text, says) in [
            ("", "empty"),
            ("userName", "operator"),
            ("userName eq", "value"),
            (r#"userName xx "a""#, "`xx` is not an operator"),
            (r#"userName eq "a"#, "not closed"),
            (r#"(userName eq "a""#, "`)`"),
            (r#"emails[type eq "w""#, "`]`"),
            (r#"a eq 1 b eq 2"#, "after a complete filter"),
            (r#"a eq 1 and"#, "attribute"),
            ("a eq 1 & b eq 2", "unexpected `&`"),
            (r#"not a eq 1"#, "`(` after `not`"),
            ("1abc eq 2", "expected an attribute"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.0.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn patch_paths() {
        assert_eq!(
            parse_path("name.givenName").unwrap(),
            PatchPath {
                attr: ap("name.givenName"),
                filter: None,
                sub: None
            }
        );
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            (p.attr.name.as_str(), p.sub.as_deref()),
            ("emails", Some("value"))
        );
        assert_eq!(p.filter, Some(eq("type", json!("work"))));
        let p = parse_path(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
        assert_eq!(p.attr.name, "members");
        let p =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber")
                .unwrap();
        assert_eq!(p.attr.name, "employeeNumber");
        assert!(parse_path(r#"emails[type eq "work""#).is_err());
        assert!(parse_path(r#"emails[type eq "work"]value"#).is_err());
    }
}
