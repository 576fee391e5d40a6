//! Forensics functions registered in every flowsql session:
//!
//! - `cidr_contains(cidr, ip)`: the IP is inside the CIDR (`'10.0.0.0/8'`, `'fd00::/8'`, or a
//!   single address); NULL when either is NULL.
//! - `has_label(labels, 'k8s:app=frontend')`: a label list holds the label, with Cilium's
//!   selector semantics: `app=frontend` (no source) matches any source, `app` matches any value,
//!   `reserved:world` matches that label.
//! - `label_value(labels, 'app')`: the value of the first label with that key (source optional).

use std::net::IpAddr;
use std::sync::Arc;

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
        ScalarUDF::from(HasLabel::new()),
        ScalarUDF::from(LabelValue::new()),
    ]
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

/// An IPv4 or IPv6 network, as a masked 128-bit number (IPv4 mapped into IPv6).
#[derive(Debug, Clone, Copy)]
struct Cidr {
    network: u128,
    mask: u128,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u32>().ok()?)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = address.parse().ok()?;
        let bits = match (ip, prefix) {
            (IpAddr::V4(_), Some(p)) if p <= 32 => p + 96,
            (IpAddr::V6(_), Some(p)) if p <= 128 => p,
            (_, Some(_)) => return None,
            (_, None) => 128,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        Some(Cidr {
            network: to_u128(ip) & mask,
            mask,
        })
    }

    fn contains(&self, ip: &str) -> bool {
        ip.parse::<IpAddr>()
            .is_ok_and(|ip| to_u128(ip) & self.mask == self.network)
    }
}

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

/// A Cilium label `source:key=value`, or a selector over labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Label<'a> {
    source: Option<&'a str>,
    key: &'a str,
    value: Option<&'a str>,
}

impl<'a> Label<'a> {
    fn parse(text: &'a str) -> Label<'a> {
        let (head, value) = match text.split_once('=') {
            Some((head, value)) => (head, Some(value)),
            None => (text, None),
        };
        match head.split_once(':') {
            Some((source, key)) => Label {
                source: Some(source),
                key,
                value,
            },
            None => Label {
                source: None,
                key: head,
                value,
            },
        }
    }

    /// Does a stored label satisfy this selector?
    fn selects(&self, label: &Label) -> bool {
        let source_ok = match self.source {
            None | Some("any") => true,
            Some(source) => label.source == Some(source),
        };
        let value_ok = match self.value {
            None => true,
            Some(value) => label.value.unwrap_or("") == value,
        };
        source_ok && value_ok && self.key == label.key
    }
}

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

#[derive(Debug, PartialEq, Eq, Hash)]
struct HasLabel {
    signature: Signature,
}

impl HasLabel {
    fn new() -> Self {
        HasLabel {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for HasLabel {
    fn name(&self) -> &str {
        "has_label"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_label_args(self.name(), args)?;
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
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
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct LabelValue {
    signature: Signature,
}

impl LabelValue {
    fn new() -> Self {
        LabelValue {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for LabelValue {
    fn name(&self) -> &str {
        "label_value"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_label_args(self.name(), args)?;
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let net = Cidr::parse("10.244.0.0/16").unwrap();
        assert!(net.contains("10.244.1.5"));
        assert!(!net.contains("10.245.1.5"));
        assert!(!net.contains("not an ip"));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1"));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains("10.0.0.1"));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8"));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains("1.2.3.4"));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("garbage/8").is_none());
    }

    #[test]
    fn label_selectors() {
        let label = Label::parse("k8s:app=frontend");
        assert!(Label::parse("k8s:app=frontend").selects(&label));
        assert!(Label::parse("app=frontend").selects(&label));
        assert!(Label::parse("app").selects(&label));
        assert!(Label::parse("any:app=frontend").selects(&label));
        assert!(!Label::parse("container:app=frontend").selects(&label));
        assert!(!Label::parse("app=backend").selects(&label));
        assert!(!Label::parse("k8s:ap=frontend").selects(&label));
        assert!(Label::parse("reserved:world").selects(&Label::parse("reserved:world")));
        let nested = Label::parse("k8s:io.kubernetes.pod.namespace=prod-app");
        assert_eq!(nested.key, "io.kubernetes.pod.namespace");
        assert_eq!(nested.value, Some("prod-app"));
    }
}
