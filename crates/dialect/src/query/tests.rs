//! Tests of the grammar, through [`QueryParams::parse`] as a request meets it.

use super::filter::parse_filter_value;
use super::order::parse_order;
use super::select::parse_select;
use super::*;
use crate::fts::FtsSyntax;

fn col(name: &str) -> Field {
    Field {
        name: name.into(),
        path: vec![],
    }
}

#[test]
fn plain_filters_and_decoding() {
    let q = QueryParams::parse("id=eq.5&name=like.*a+b*&x=in.(1,%222,3%22)").unwrap();
    assert_eq!(q.filters.len(), 3);
    assert_eq!(
        q.filters[1].1.operation,
        Operation::Compare {
            op: CmpOp::Like,
            value: "*a b*".into()
        }
    );
    assert_eq!(
        q.filters[2].1.operation,
        Operation::In(vec!["1".into(), "2,3".into()])
    );
}

#[test]
fn containment_operands_become_json() {
    let op = |v: &str| parse_filter_value(v).map(|(_, o)| o);
    let contain = |op, json: &str| Operation::Contain {
        op,
        json: json.into(),
    };
    assert_eq!(
        op(r#"cs.{a, "b,c" ,1,true,"2",2.5e1}"#).unwrap(),
        contain(ContainOp::Contains, r#"["a","b,c",1,true,"2",25.0]"#)
    );
    assert_eq!(
        op(r#"cd.{"k": [1, 2]}"#).unwrap(),
        contain(ContainOp::ContainedBy, r#"{"k":[1,2]}"#)
    );
    assert_eq!(op("ov.{}").unwrap(), contain(ContainOp::Overlaps, "{}"));
    assert_eq!(
        op("ov.[1,2]").unwrap(),
        contain(ContainOp::Overlaps, "[1,2]")
    );
    // Ranges have no SQLite type.
    assert!(matches!(
        op("ov.[1,10)").unwrap(),
        Operation::Unsupported { .. }
    ));
    assert!(matches!(
        op("cs.(1,10)").unwrap(),
        Operation::Unsupported { .. }
    ));
    for bad in ["cs.{a", "cs.{a}}", "cs(any).{a}", "ov.{\"a}"] {
        assert_eq!(op(bad).unwrap_err().code.as_str(), "PGRST100", "{bad}");
    }
}

#[test]
fn empty_value_is_a_parse_error() {
    let e = QueryParams::parse("a=").unwrap_err();
    assert_eq!(e.code.as_str(), "PGRST100");
    assert_eq!(e.status, 400);
    assert_eq!(
        e.message,
        "\"failed to parse filter ()\" (line 1, column 1)"
    );
}

#[test]
fn bad_operator_is_reported_at_column_one() {
    let e = QueryParams::parse("id=0").unwrap_err();
    assert_eq!(
        e.message,
        "\"failed to parse filter (0)\" (line 1, column 1)"
    );
    assert_eq!(
        e.details.unwrap(),
        "unexpected \"0\" expecting \"not\" or operator (eq, gt, ...)"
    );
}

#[test]
fn key_without_equals_is_dropped() {
    let q = QueryParams::parse("flag&id=eq.1").unwrap();
    assert_eq!(q.filters.len(), 1);
}

#[test]
fn not_is_and_quantifiers() {
    let (neg, op) = parse_filter_value("not.is.NULL").unwrap();
    assert!(neg);
    assert_eq!(op, Operation::Is(IsValue::Null));
    let (_, op) = parse_filter_value("like(all).{O*, \"*n,\"}").unwrap();
    assert_eq!(
        op,
        Operation::Quantified {
            op: CmpOp::Like,
            quantifier: Quantifier::All,
            values: vec!["O*".into(), "*n,".into()]
        }
    );
    assert!(parse_filter_value("is.maybe").is_err());
    assert!(parse_filter_value("in.(1,2").is_err());
    assert_eq!(
        parse_filter_value("in.()").unwrap().1,
        Operation::In(vec![])
    );
    assert_eq!(
        parse_filter_value("in.(   )").unwrap().1,
        Operation::In(vec![])
    );
}

#[test]
fn select_with_alias_cast_path_and_embed() {
    let s =
        parse_select("id,n:name::text,settings->foo->>bar,c:clients!inner(id,*),...x(y)").unwrap();
    assert_eq!(s.len(), 5);
    assert_eq!(
        s[1],
        SelectItem::Column {
            alias: Some("n".into()),
            field: col("name"),
            cast: Some("text".into())
        }
    );
    match &s[2] {
        SelectItem::Column { field, .. } => {
            assert_eq!(field.path.len(), 2);
            assert_eq!(field.path[1].arrow, Arrow::Text);
        }
        other => panic!("{other:?}"),
    }
    match &s[3] {
        SelectItem::Embed {
            alias,
            relation,
            hints,
            items,
            ..
        } => {
            assert_eq!(alias.as_deref(), Some("c"));
            assert_eq!(relation, "clients");
            assert_eq!(hints, &vec!["inner".to_string()]);
            assert_eq!(items.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&s[4], SelectItem::Embed { spread: true, .. }));
}

#[test]
fn select_quoted_names_and_negative_index() {
    let s = parse_select("\"a.b\",\"x,y\":data->-1").unwrap();
    assert_eq!(
        s[0],
        SelectItem::Column {
            alias: None,
            field: col("a.b"),
            cast: None
        }
    );
    match &s[1] {
        SelectItem::Column { alias, field, .. } => {
            assert_eq!(alias.as_deref(), Some("x,y"));
            assert_eq!(field.path[0].key, JsonKey::Index(-1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn aggregates_parse_in_postgrest_order() {
    // alias:field::cast.function()::aggregate_cast, and count() alone.
    let s = parse_select(
        "count(),n:count()::text,price.sum(),t:price::int.avg()::text,data->>x::numeric.max(),b(id.min())",
    )
    .unwrap();
    let agg = |alias: Option<&str>,
               function,
               field: Option<Field>,
               cast: Option<&str>,
               ac: Option<&str>| {
        SelectItem::Aggregate {
            alias: alias.map(str::to_string),
            function,
            field,
            cast: cast.map(str::to_string),
            aggregate_cast: ac.map(str::to_string),
        }
    };
    assert_eq!(s[0], agg(None, AggregateFn::Count, None, None, None));
    assert_eq!(
        s[1],
        agg(Some("n"), AggregateFn::Count, None, None, Some("text"))
    );
    assert_eq!(
        s[2],
        agg(None, AggregateFn::Sum, Some(col("price")), None, None)
    );
    assert_eq!(
        s[3],
        agg(
            Some("t"),
            AggregateFn::Avg,
            Some(col("price")),
            Some("int"),
            Some("text")
        )
    );
    match &s[4] {
        SelectItem::Aggregate {
            function: AggregateFn::Max,
            field: Some(f),
            cast: Some(c),
            ..
        } => {
            assert_eq!(f.name, "data");
            assert_eq!(f.path.len(), 1);
            assert_eq!(c, "numeric");
        }
        other => panic!("{other:?}"),
    }
    match &s[5] {
        SelectItem::Embed { items, .. } => {
            assert_eq!(
                items[0],
                agg(None, AggregateFn::Min, Some(col("id")), None, None)
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn aggregate_syntax_errors() {
    // Not a function, a call with arguments, `*` aggregated, a cast after count's name.
    for bad in [
        "price.total()",
        "price.sum(1)",
        "price.sum",
        "*.count()",
        "price.sum()x",
    ] {
        let e = parse_select(bad).unwrap_err();
        assert_eq!(e.status, 400, "{bad}");
        assert_eq!(e.code.as_str(), "PGRST100", "{bad}: {e:?}");
    }
}

#[test]
fn select_syntax_errors() {
    for bad in ["id,", "a(b", "a::", "(x)", "a.b"] {
        let e = parse_select(bad).unwrap_err();
        assert_eq!(e.code.as_str(), "PGRST100", "{bad}");
    }
}

#[test]
fn logic_trees_nest_and_keep_values_whole() {
    let q = QueryParams::parse(
        "or=(a.eq.14,not.and(a.gte.11,a.lte.17),name.eq.%22x,y%22,id.in.(1,2))&not.and=(b.is.null)",
    )
    .unwrap();
    assert_eq!(q.logic.len(), 2);
    let LogicTree::Node {
        children,
        and,
        negated,
    } = &q.logic[0].1
    else {
        panic!()
    };
    assert!(!and && !negated);
    assert_eq!(children.len(), 4);
    assert!(matches!(
        &children[1],
        LogicTree::Node {
            negated: true,
            and: true,
            ..
        }
    ));
    let LogicTree::Leaf(f) = &children[2] else {
        panic!()
    };
    assert_eq!(
        f.operation,
        Operation::Compare {
            op: CmpOp::Compare(Comparison::Eq),
            value: "x,y".into()
        }
    );
    let LogicTree::Leaf(f) = &children[3] else {
        panic!()
    };
    assert_eq!(f.operation, Operation::In(vec!["1".into(), "2".into()]));
    assert!(matches!(
        &q.logic[1].1,
        LogicTree::Node {
            negated: true,
            and: true,
            ..
        }
    ));
    assert!(q.logic[1].0.is_empty());
}

#[test]
fn empty_or_is_an_error() {
    assert_eq!(
        QueryParams::parse("or=()").unwrap_err().code.as_str(),
        "PGRST100"
    );
    assert_eq!(
        QueryParams::parse("or=(a.eq.1").unwrap_err().code.as_str(),
        "PGRST100"
    );
}

#[test]
fn order_terms() {
    let t = parse_order("age.desc,height.asc.nullslast,data->>x,rel(col).desc").unwrap();
    assert_eq!(t.len(), 4);
    assert_eq!(t[0].direction, Some(Direction::Desc));
    assert_eq!(t[1].nulls, Some(Nulls::Last));
    assert_eq!(t[2].field.path.len(), 1);
    assert_eq!(t[3].relation.as_deref(), Some("rel"));
    let e = parse_order("id.asc.nullslasttt").unwrap_err();
    assert_eq!(
        e.message,
        "\"failed to parse order (id.asc.nullslasttt)\" (line 1, column 17)"
    );
    assert_eq!(
        e.details.unwrap(),
        "unexpected \"t\" expecting \",\" or end of input"
    );
}

#[test]
fn scoped_params_and_limits() {
    let q = QueryParams::parse("limit=5&limit=7&offset=2&tasks.limit=1&tasks.name=eq.x").unwrap();
    assert_eq!(q.ranges[&vec![]].limit, Some(7));
    assert_eq!(q.ranges[&vec![]].offset, Some(2));
    assert_eq!(q.ranges[&vec!["tasks".to_string()]].limit, Some(1));
    assert_eq!(q.filters[0].0, vec!["tasks".to_string()]);
    assert_eq!(
        QueryParams::parse("limit=x").unwrap_err().code.as_str(),
        "PGRST100"
    );
}

#[test]
fn quoted_filter_keys() {
    let q = QueryParams::parse("%22a:b%22=eq.1&%22information.cpe%22=like.*MS*").unwrap();
    assert_eq!(q.filters[0].1.field.name, "a:b");
    assert_eq!(q.filters[1].1.field.name, "information.cpe");
    assert!(q.filters[1].0.is_empty());
}

#[test]
fn full_text_filters_keep_their_syntax_language_and_raw_query() {
    let q = QueryParams::parse(
        "body=fts(english).fat%20%26%20!rat&title=not.plfts.a+b&or=(body.wfts.%22x,y%22,body.phfts(simple).a)",
    )
    .unwrap();
    assert_eq!(
        q.filters[0].1.operation,
        Operation::FullText {
            syntax: FtsSyntax::Tsquery,
            language: Some("english".into()),
            query: "fat & !rat".into()
        }
    );
    assert!(q.filters[1].1.negated);
    assert_eq!(
        q.filters[1].1.operation,
        Operation::FullText {
            syntax: FtsSyntax::Plain,
            language: None,
            query: "a b".into()
        }
    );
    let LogicTree::Node { children, .. } = &q.logic[0].1 else {
        panic!()
    };
    let ops: Vec<_> = children
        .iter()
        .map(|c| match c {
            LogicTree::Leaf(f) => f.operation.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        [
            Operation::FullText {
                syntax: FtsSyntax::Websearch,
                language: None,
                query: "x,y".into()
            },
            Operation::FullText {
                syntax: FtsSyntax::Phrase,
                language: Some("simple".into()),
                query: "a".into()
            }
        ]
    );
    for bad in [
        "fts().a",
        "fts(en glish).a",
        "fts(a'b).x",
        "wfts",
        "phfts(x",
    ] {
        assert_eq!(
            parse_filter_value(bad).unwrap_err().code.as_str(),
            "PGRST100",
            "{bad}"
        );
    }
    assert!(parse_filter_value("fts(pg_catalog.english).x").is_ok());
}

#[test]
fn canonical_sorts_params() {
    assert_eq!(canonical_query("select=id&a=eq.1"), "a=eq.1&select=id");
    // Already in order: as sent; empty pieces are dropped.
    assert_eq!(canonical_query("a=eq.1"), "a=eq.1");
    assert_eq!(canonical_query("a=eq.1&b=1&b=1"), "a=eq.1&b=1&b=1");
    assert_eq!(canonical_query("a=1&b=2&"), "a=1&b=2");
    assert_eq!(canonical_query("&b=1&&a=2"), "a=2&b=1");
    assert_eq!(canonical_query(""), "");
}
