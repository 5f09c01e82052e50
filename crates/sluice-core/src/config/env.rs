//! Environment variables in a pipeline file: `${NAME}` and `${NAME:-default}` inside string
//! values are replaced by the variable's value (the default when it is unset or empty), so a
//! password or key need not be written into the file. `$${` is a literal `${`; any other `$`
//! stays as it is. Substitution happens in the parsed strings, not the text: a value holding a
//! quote or a backslash cannot break the file, and comments are never read. An unset variable
//! without a default is refused with the field it is in; its value never appears in a message.

use super::Problems;

/// Replaces the variables in every string of `value` (at `path` in the file) with what `env`
/// gives; adds a problem for each that cannot be.
pub(super) fn interpolate(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        toml::Value::String(text) => match substitute(text, env) {
            Ok(Some(substituted)) => *text = substituted,
            Ok(None) => {}
            Err(message) => problems.add(path, message),
        },
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{index}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                interpolate(item, &child_path(path, key), env, problems);
            }
        }
        _ => {}
    }
}

/// `path.key`, with the key quoted when it is not a bare TOML key.
fn child_path(path: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("\"{key}\"")
    };
    match path {
        "" => key,
        _ => format!("{path}.{key}"),
    }
}

/// `text` with its variables replaced, or `None` when it has none.
fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(after) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let end = after
            .find('}')
            .ok_or("an unclosed ${: expected ${NAME} or ${NAME:-default}")?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_variable_name(name) {
            return Err(format!(
                "${{{inner}}}: expected an environment variable name (letters, digits and _, \
                 not starting with a digit), optionally followed by :-default"
            ));
        }
        match (env(name).filter(|value| !value.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (or empty); set it, or write \
                     ${{{name}:-default}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_PASSWORD" => Some("p\"a$s\\w{}".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn sub(text: &str) -> Result<Option<String>, String> {
        substitute(text, &env)
    }

    #[test]
    fn variables_and_defaults_are_replaced() {
        assert_eq!(sub("plain $5 text"), Ok(None));
        assert_eq!(
            sub("pw=${USER_PASSWORD}!").unwrap().unwrap(),
            "pw=p\"a$s\\w{}!"
        );
        assert_eq!(sub("${MISSING:-fallback}").unwrap().unwrap(), "fallback");
        assert_eq!(sub("${EMPTY:-fallback}").unwrap().unwrap(), "fallback");
        assert_eq!(sub("${MISSING:-}").unwrap().unwrap(), "");
        assert_eq!(
            sub("$${USER_PASSWORD} $x").unwrap().unwrap(),
            "${USER_PASSWORD} $x"
        );
    }

    #[test]
    fn unset_malformed_and_unclosed_are_refused_without_values() {
        let unset = sub("${MISSING}").unwrap_err();
        assert!(unset.contains("MISSING is not set"), "{unset}");
        assert!(sub("${EMPTY}").unwrap_err().contains("EMPTY is not set"));
        assert!(
            sub("${1ABC}")
                .unwrap_err()
                .contains("expected an environment variable name")
        );
        assert!(sub("${USER_PASSWORD").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn every_problem_names_its_field() {
        let mut value: toml::Value = toml::from_str(
            r#"
            [kafka.options]
            "sasl.password" = "${MISSING}"
            [[streams]]
            tags = ["ok", "${ALSO_MISSING}"]
            "#,
        )
        .unwrap();
        let mut problems = Problems::default();
        interpolate(&mut value, "", &env, &mut problems);
        let fields: Vec<&str> = problems.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["kafka.options.\"sasl.password\"", "streams[0].tags[1]"]
        );
    }
}
