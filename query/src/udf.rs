//! Forensics functions registered in every flowsql session:
//!
//! - `cidr_contains(cidr, ip)`: the IP is inside the CIDR (`'10.0.0.0/8'`, `'fd00::/8'`, or a
//!   single address); NULL when either is NULL.
//! - `has_label(labels, 'k8s:app=frontend')`: a label list holds the label, with Cilium's
//!   selector semantics: `app=frontend` (no source) matches any source, `app` matches any value,
//!   `reserved:world` matches that label.
//! - `label_value(labels, 'app')`: the value of the first label with that key (source optional).
//! - `label_selector(labels, 'app=frontend,tier!=db')`: a Kubernetes label selector (`k`, `!k`,
//!   `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, comma = AND) over Cilium labels, as
//!   `hubble observe --label` takes it: a key without a source (`app`) matches any source,
//!   `k8s:app` only that one.
//! - `url_path(http_url)`: the decoded path of a request URL (no host, query or fragment),
//!   NULL when it is not one; what `--http-path` matches, as Hubble does.
//! - `policy_names(egress_denied_by, ingress_denied_by, ...)`: the names of the policies in
//!   the lists (NULL lists are empty), as one list.
//! - `policy_list(egress_denied_by, ingress_denied_by, ...)`: the same names joined with ", ",
//!   NULL when none (what `flows_hourly` stores).
//! - `peer(workload, pod_name, names, labels, ip)`: what one end of a connection is called in
//!   regressions and rollups: the workload; else the pod name without its ReplicaSet/DaemonSet
//!   suffix; else (outside the cluster) the first DNS name, the reserved identity
//!   (`reserved:world`, `reserved:host`, ...), or the IP.

use std::sync::Arc;

use flow_schema::matching::{Cidr, Label, Selector};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// All forensics functions.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(CidrContains::new()),
        ScalarUDF::from(LabelFunction::new(LabelFunctionKind::HasLabel)),
        ScalarUDF::from(LabelFunction::new(LabelFunctionKind::LabelValue)),
        label_selector(),
        ScalarUDF::from(PolicyNames::new()),
        ScalarUDF::from(PolicyList::new()),
        url_path(),
        ScalarUDF::from(Peer::new()),
    ]
}

/// `url_path`, for expressions built in code.
pub fn url_path() -> ScalarUDF {
    ScalarUDF::from(UrlPath::new())
}

/// `cidr_contains`, for expressions built in code.
pub fn cidr_contains() -> ScalarUDF {
    ScalarUDF::from(CidrContains::new())
}

/// `label_selector`, for expressions built in code.
pub fn label_selector() -> ScalarUDF {
    ScalarUDF::from(LabelFunction::new(LabelFunctionKind::LabelSelector))
}

/// A string argument: parsed once when it is a constant, per row otherwise.
enum StrArg {
    Scalar(Option<String>),
    Array(StringArray),
}

impl StrArg {
    fn new(value: &ColumnarValue, function: &str) -> Result<StrArg> {
        Ok(match value {
            ColumnarValue::Scalar(scalar) => {
                let text = cast_scalar_to_string(scalar, function)?;
                StrArg::Scalar(text)
            }
            ColumnarValue::Array(array) => {
                StrArg::Array(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
            }
        })
    }

    fn get(&self, row: usize) -> Option<&str> {
        match self {
            StrArg::Scalar(value) => value.as_deref(),
            StrArg::Array(array) => array.is_valid(row).then(|| array.value(row)),
        }
    }
}

fn cast_scalar_to_string(scalar: &ScalarValue, function: &str) -> Result<Option<String>> {
    if scalar.is_null() {
        return Ok(None);
    }
    match scalar.cast_to(&DataType::Utf8)? {
        ScalarValue::Utf8(value) => Ok(value),
        other => exec_err!("{function}: expected a string, got {other}"),
    }
}

fn string_like(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(data_type, DataType::Dictionary(_, value) if string_like(value))
        || matches!(data_type, DataType::Null)
}

fn labels_like(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => string_like(item.data_type()),
        DataType::Null => true,
        _ => false,
    }
}

// ---- cidr_contains -------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, Hash)]
struct CidrContains {
    signature: Signature,
}

impl CidrContains {
    fn new() -> Self {
        CidrContains {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CidrContains {
    fn name(&self) -> &str {
        "cidr_contains"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !args.iter().all(string_like) {
            return plan_err!("cidr_contains(cidr, ip) takes two strings, got {args:?}");
        }
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let cidrs = StrArg::new(&args.args[0], "cidr_contains")?;
        let ips = StrArg::new(&args.args[1], "cidr_contains")?;
        let constant = match &cidrs {
            StrArg::Scalar(Some(text)) => Some(parse_cidr(text)?),
            _ => None,
        };
        let mut out = BooleanBuilder::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let (Some(cidr_text), Some(ip)) = (cidrs.get(row), ips.get(row)) else {
                out.append_null();
                continue;
            };
            let cidr = match constant {
                Some(cidr) => cidr,
                None => parse_cidr(cidr_text)?,
            };
            out.append_value(cidr.contains(ip));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

fn parse_cidr(text: &str) -> Result<Cidr> {
    match Cidr::parse(text) {
        Some(cidr) => Ok(cidr),
        None => {
            exec_err!("cidr_contains: {text:?} is not a CIDR or IP address (e.g. '10.0.0.0/8')")
        }
    }
}

// ---- labels ----------------------------------------------------------------------------------

/// Calls `each(row, labels of the row)` for every row, NULL lists giving `None`.
fn for_each_label_list(
    lists: &ColumnarValue,
    rows: usize,
    mut each: impl FnMut(usize, Option<Vec<Option<&str>>>) -> Result<()>,
) -> Result<()> {
    let array = lists.to_array(rows)?;
    if array.data_type() == &DataType::Null {
        for row in 0..rows {
            each(row, None)?;
        }
        return Ok(());
    }
    let list = cast(
        &array,
        &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
            "item",
            DataType::Utf8,
            true,
        ))),
    )?;
    let list = list.as_list::<i32>();
    let values = list.values().as_string::<i32>();
    for row in 0..rows {
        if list.is_null(row) {
            each(row, None)?;
            continue;
        }
        let offsets = list.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let labels = (start..end)
            .map(|i| values.is_valid(i).then(|| values.value(i)))
            .collect();
        each(row, Some(labels))?;
    }
    Ok(())
}

fn check_label_args(name: &str, args: &[DataType]) -> Result<()> {
    if args.len() != 2 || !labels_like(&args[0]) || !string_like(&args[1]) {
        return plan_err!(
            "{name}(labels, label) takes a label list (e.g. source_labels) and a string, got {args:?}"
        );
    }
    Ok(())
}

/// The functions over a label list and a string: `has_label`, `label_value`,
/// `label_selector`. One implementation of the UDF plumbing, the body per function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LabelFunctionKind {
    HasLabel,
    LabelValue,
    LabelSelector,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct LabelFunction {
    kind: LabelFunctionKind,
    signature: Signature,
}

impl LabelFunction {
    fn new(kind: LabelFunctionKind) -> Self {
        LabelFunction {
            kind,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for LabelFunction {
    fn name(&self) -> &str {
        match self.kind {
            LabelFunctionKind::HasLabel => "has_label",
            LabelFunctionKind::LabelValue => "label_value",
            LabelFunctionKind::LabelSelector => "label_selector",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_label_args(self.name(), args)?;
        Ok(match self.kind {
            LabelFunctionKind::LabelValue => DataType::Utf8,
            _ => DataType::Boolean,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match self.kind {
            LabelFunctionKind::HasLabel => has_label(args),
            LabelFunctionKind::LabelValue => label_value(args),
            LabelFunctionKind::LabelSelector => label_selector_rows(args),
        }
    }
}

fn has_label(args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let selectors = StrArg::new(&args.args[1], "has_label")?;
    let mut out = BooleanBuilder::with_capacity(args.number_rows);
    for_each_label_list(&args.args[0], args.number_rows, |row, labels| {
        match (labels, selectors.get(row)) {
            (Some(labels), Some(selector)) => {
                let selector = Label::parse(selector);
                let found = labels
                    .iter()
                    .flatten()
                    .any(|l| selector.selects(&Label::parse(l)));
                out.append_value(found);
            }
            _ => out.append_null(),
        }
        Ok(())
    })?;
    let result: BooleanArray = out.finish();
    Ok(ColumnarValue::Array(Arc::new(result)))
}

fn label_value(args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let keys = StrArg::new(&args.args[1], "label_value")?;
    let mut out = StringBuilder::new();
    for_each_label_list(&args.args[0], args.number_rows, |row, labels| {
        let found = match (labels, keys.get(row)) {
            (Some(labels), Some(key)) => {
                // Only the key (and source) select; a value in the argument is ignored.
                let selector = Label {
                    value: None,
                    ..Label::parse(key)
                };
                labels
                    .iter()
                    .flatten()
                    .map(|l| Label::parse(l))
                    .find(|l| selector.selects(l))
                    .map(|l| l.value.unwrap_or("").to_string())
            }
            _ => None,
        };
        out.append_option(found);
        Ok(())
    })?;
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

fn label_selector_rows(args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let texts = StrArg::new(&args.args[1], "label_selector")?;
    let constant = match &texts {
        StrArg::Scalar(Some(text)) => Some(parse_selector(text)?),
        _ => None,
    };
    let mut out = BooleanBuilder::with_capacity(args.number_rows);
    for_each_label_list(&args.args[0], args.number_rows, |row, labels| {
        let labels: Vec<Label> = labels
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .map(Label::parse)
            .collect();
        match (&constant, texts.get(row)) {
            (Some(selector), _) => out.append_value(selector.matches(&labels)),
            (None, Some(text)) => out.append_value(parse_selector(text)?.matches(&labels)),
            (None, None) => out.append_null(),
        }
        Ok(())
    })?;
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

// ---- label_selector ------------------------------------------------------------------------

fn parse_selector(text: &str) -> Result<Selector> {
    Selector::parse(text).or_else(|why| exec_err!("label_selector: {text:?}: {why}"))
}

// ---- policy_names ------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, Hash)]
struct PolicyNames {
    signature: Signature,
}

impl PolicyNames {
    fn new() -> Self {
        PolicyNames {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn policy_list(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) => matches!(item.data_type(), DataType::Struct(fields)
            if fields.iter().any(|f| f.name() == "name")),
        DataType::Null => true,
        _ => false,
    }
}

impl ScalarUDFImpl for PolicyNames {
    fn name(&self) -> &str {
        "policy_names"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.is_empty() || !args.iter().all(policy_list) {
            return plan_err!(
                "policy_names takes policy lists (egress_denied_by, ingress_allowed_by, ...), got {args:?}"
            );
        }
        Ok(DataType::List(Arc::new(
            datafusion::arrow::datatypes::Field::new("item", DataType::Utf8, true),
        )))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| StringLists::field(&a.to_array(rows)?, "name"))
            .collect::<Result<Vec<_>>>()?;
        let mut out = datafusion::arrow::array::ListBuilder::new(StringBuilder::new());
        for row in 0..rows {
            for column in &columns {
                for name in column.items(row) {
                    out.values().append_value(name);
                }
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `policy_list(egress_denied_by, ingress_denied_by, ...)`: the same names joined with ", ",
/// NULL when there are none (what rollups store; cheaper than array_to_string(policy_names)).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PolicyList {
    signature: Signature,
}

impl PolicyList {
    fn new() -> Self {
        PolicyList {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PolicyList {
    fn name(&self) -> &str {
        "policy_list"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.is_empty() || !args.iter().all(policy_list) {
            return plan_err!(
                "policy_list takes policy lists (egress_denied_by, ingress_allowed_by, ...), got {args:?}"
            );
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let columns = args
            .args
            .iter()
            .map(|a| StringLists::field(&a.to_array(rows)?, "name"))
            .collect::<Result<Vec<_>>>()?;
        let mut out = StringBuilder::new();
        let mut text = String::new();
        for row in 0..rows {
            text.clear();
            for name in columns.iter().flat_map(|c| c.items(row)) {
                if !text.is_empty() {
                    text.push_str(", ");
                }
                text.push_str(name);
            }
            out.append_option((!text.is_empty()).then_some(text.as_str()));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

// ---- peer --------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, Hash)]
struct Peer {
    signature: Signature,
}

impl Peer {
    fn new() -> Self {
        Peer {
            signature: Signature::any(5, Volatility::Immutable),
        }
    }
}

/// A pod name's ReplicaSet / DaemonSet suffix (`-7d9f8b6c4-abcde`, `-x2k9p`), in the alphabet
/// Kubernetes generates names from (no vowels, so `my-nginx` keeps its name).
pub const REPLICA_SUFFIX: &str =
    "(-[bcdfghjklmnpqrstvwxz2456789]{6,10})?-[bcdfghjklmnpqrstvwxz2456789]{5}$";

fn replica_suffix() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(REPLICA_SUFFIX).expect("a valid pattern"))
}

/// The pod name without its generated suffix.
pub fn pod_workload(pod: &str) -> &str {
    match replica_suffix().find(pod) {
        Some(m) if m.start() > 0 => &pod[..m.start()],
        _ => pod,
    }
}

fn strings(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

/// A list column's strings (the items of a list of strings, or one field of a list of
/// structs: policy names), converted to strings once per batch and read row by row as ranges
/// of the list's offsets.
struct StringLists {
    list: Option<datafusion::arrow::array::ListArray>,
    values: Option<StringArray>,
}

impl StringLists {
    /// A list of strings.
    fn new(array: &ArrayRef) -> Result<StringLists> {
        StringLists::with_values(array, |values| Some(values.clone()))
    }

    /// The `field` of a list of structs (no items if the structs lack it).
    fn field(array: &ArrayRef, field: &str) -> Result<StringLists> {
        StringLists::with_values(array, |values| {
            values.as_struct_opt()?.column_by_name(field).cloned()
        })
    }

    fn with_values(
        array: &ArrayRef,
        values: impl FnOnce(&ArrayRef) -> Option<ArrayRef>,
    ) -> Result<StringLists> {
        let Some(list) = array.as_list_opt::<i32>() else {
            return Ok(StringLists {
                list: None,
                values: None,
            });
        };
        let values = match values(list.values()) {
            Some(values) => Some(strings(&values)?.as_string::<i32>().clone()),
            None => None,
        };
        Ok(StringLists {
            list: Some(list.clone()),
            values,
        })
    }

    /// The items of `row` (none when NULL).
    fn items(&self, row: usize) -> impl Iterator<Item = &str> + '_ {
        let range = match &self.list {
            Some(list) if list.is_valid(row) => {
                let offsets = list.value_offsets();
                offsets[row] as usize..offsets[row + 1] as usize
            }
            _ => 0..0,
        };
        range.filter_map(move |i| {
            let values = self.values.as_ref()?;
            values.is_valid(i).then(|| values.value(i))
        })
    }
}

impl ScalarUDFImpl for Peer {
    fn name(&self) -> &str {
        "peer"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let list = |t: &DataType| matches!(t, DataType::List(_) | DataType::Null);
        let ok = args.len() == 5
            && string_like(&args[0])
            && string_like(&args[1])
            && list(&args[2])
            && list(&args[3])
            && string_like(&args[4]);
        if !ok {
            return plan_err!(
                "peer takes (workload, pod_name, names, labels, ip), e.g. peer(source_workload, \
                 source_pod_name, source_names, source_labels, ip_source); got {args:?}"
            );
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let workload = strings(&arrays[0])?;
        let pod = strings(&arrays[1])?;
        let ip = strings(&arrays[4])?;
        let (workload, pod, ip) = (
            workload.as_string::<i32>(),
            pod.as_string::<i32>(),
            ip.as_string::<i32>(),
        );
        let (names, labels) = (StringLists::new(&arrays[2])?, StringLists::new(&arrays[3])?);
        let mut out = StringBuilder::new();
        for row in 0..rows {
            if workload.is_valid(row) {
                out.append_value(workload.value(row));
            } else if pod.is_valid(row) {
                out.append_value(pod_workload(pod.value(row)));
            } else if let Some(name) = names.items(row).next() {
                out.append_value(name);
            } else if let Some(reserved) = labels.items(row).find(|l| l.starts_with("reserved:")) {
                out.append_value(reserved);
            } else {
                out.append_option(ip.is_valid(row).then(|| ip.value(row)));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

// ---- url_path ----------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, Hash)]
struct UrlPath {
    signature: Signature,
}

impl UrlPath {
    fn new() -> Self {
        UrlPath {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// The path of an absolute URL or an absolute path, percent-decoded (Go's
/// `url.ParseRequestURI(u).Path`).
pub fn request_path(text: &str) -> Option<String> {
    let parsed = if text.starts_with('/') {
        url::Url::parse("http://host").ok()?.join(text).ok()?
    } else {
        url::Url::parse(text).ok()?
    };
    if parsed.cannot_be_a_base() {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(parsed.path())
            .decode_utf8_lossy()
            .into_owned(),
    )
}

impl ScalarUDFImpl for UrlPath {
    fn name(&self) -> &str {
        "url_path"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.len() != 1 || !string_like(&args[0]) {
            return plan_err!("url_path(url) takes a string (e.g. http_url), got {args:?}");
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let urls = StrArg::new(&args.args[0], "url_path")?;
        let mut out = StringBuilder::new();
        for row in 0..args.number_rows {
            out.append_option(urls.get(row).and_then(request_path));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_suffixes_come_off_pod_names() {
        assert_eq!(pod_workload("api-gateway-7d9f8b6c4-x2k9p"), "api-gateway");
        assert_eq!(pod_workload("node-exporter-x2k9p"), "node-exporter");
        assert_eq!(pod_workload("my-nginx"), "my-nginx");
        assert_eq!(pod_workload("bzzzz"), "bzzzz");
    }

    #[test]
    fn request_paths() {
        assert_eq!(
            request_path("http://h/a%20b?q=1#f").as_deref(),
            Some("/a b")
        );
        assert_eq!(request_path("/get?x").as_deref(), Some("/get"));
        assert_eq!(request_path("http://user-service.prod/"), Some("/".into()));
        assert_eq!(request_path("foo"), None);
        assert_eq!(request_path("mailto:x@y"), None);
    }
}
