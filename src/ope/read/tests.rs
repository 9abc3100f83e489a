use super::*;

fn ok<T>(r: Result<T, OpeError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// The (row, column) an error points at.
fn location<T: std::fmt::Debug>(r: Result<T, OpeError>) -> (usize, Option<String>) {
    match r {
        Err(OpeError::Parse { row, column, .. }) => (row, column),
        other => panic!("expected a located parse error, got {other:?}"),
    }
}

// Quoted fields keep commas, doubled quotes and newlines; CRLF and blank lines are handled; records know their line.
#[test]
fn csv_quoted_fields_and_lines() {
    let text = "a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\n\"two\nlines\",3\n4,\n";
    let recs = ok(csv_records(text, "f.csv"));
    let got: Vec<(usize, Vec<&str>)> = recs
        .iter()
        .map(|r| (r.line, r.fields.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, vec!["a", "b"]),
            (2, vec!["x, y", "say \"hi\""]),
            (4, vec!["two\nlines", "3"]),
            (6, vec!["4", ""]),
        ]
    );
}

// Malformed quoting is an error at the right line and column.
#[test]
fn csv_bad_quotes_are_located() {
    assert_eq!(
        location(csv_records("a,b\n1,\"open\n", "f.csv")),
        (2, Some("column 2".to_string()))
    );
    assert_eq!(
        location(csv_records("a,b\n1,x\"y\n", "f.csv")),
        (2, Some("column 2".to_string()))
    );
    assert_eq!(
        location(csv_records("a,b\n\"q\"z,1\n", "f.csv")),
        (2, Some("column 1".to_string()))
    );
}

const OBP: &str =
    "round,timestamp,action,position,reward,pscore,prob:0,user_feature_0,\"affinity 1\"\n\
0,1574553634762,2,0,1,0.5,0.3,7,0.25\n\
1,2019-11-24 00:00:34+00:00,0,1,0,0.25,0.3,8,-1\n";

// OBP columns: round, timestamp and prob:* are ignored, the rest is context; actions are 0..=max.
#[test]
fn obp_columns_and_actions() {
    let log = ok(parse_obp_csv(OBP, "log.csv"));
    assert_eq!(log.actions, vec!["0", "1", "2"]);
    assert_eq!(log.positions, 2);
    assert_eq!(log.context_names, vec!["user_feature_0", "affinity 1"]);
    assert_eq!(log.format, LogFormat::ObpCsv);
    let e = &log.events[0];
    assert_eq!((e.action, e.position, e.reward, e.pscore), (2, 0, 1.0, 0.5));
    assert_eq!(e.context, vec![7.0, 0.25]);
    assert_eq!(e.timestamp_ms, Some(1_574_553_634_762));
    assert_eq!(log.events[1].timestamp_ms, None);
    assert_eq!(log.events[1].context, vec![8.0, -1.0]);
}

// Every bad OBP field is reported with its 1-based line and its column number and name.
#[test]
fn obp_bad_rows_are_located() {
    let header = "action,position,reward,pscore,x\n";
    let cases = [
        ("0,0,1,0,1\n", "column 4 (pscore)"),
        ("0,0,1,1.5,1\n", "column 4 (pscore)"),
        ("-1,0,1,0.5,1\n", "column 1 (action)"),
        ("1.5,0,1,0.5,1\n", "column 1 (action)"),
        ("0,x,1,0.5,1\n", "column 2 (position)"),
        ("0,0,NaN,0.5,1\n", "column 3 (reward)"),
        ("0,0,1,0.5,red\n", "column 5 (x)"),
    ];
    for (row, col) in cases {
        let text = format!("{header}0,0,0,0.5,1\n{row}");
        assert_eq!(
            location(parse_obp_csv(&text, "log.csv")),
            (3, Some(col.to_string())),
            "{row}"
        );
    }
    assert_eq!(
        location(parse_obp_csv("action,position,reward,pscore\n0,0,1\n", "l")).0,
        2
    );
    assert!(matches!(
        parse_obp_csv("action,reward,pscore\n0,1,0.5\n", "l"),
        Err(OpeError::File { .. })
    ));
    assert!(matches!(
        parse_obp_csv("action,position,reward,pscore\n", "l"),
        Err(OpeError::File { .. })
    ));
}

// The action count of an OBP log can be raised, never lowered.
#[test]
fn obp_action_count_override() {
    let log = ok(parse_obp_csv(OBP, "log.csv"));
    assert!(log.clone().with_action_count(2).is_err());
    assert_eq!(ok(log.with_action_count(5)).actions.len(), 5);
}

// The Open Bandit Dataset random log reads with OBP's conventions.
#[test]
fn obd_random_log() {
    let path = Path::new("/work/shared/data/obd/obd_all_random.csv");
    if !path.exists() {
        eprintln!("skipping: {} is absent", path.display());
        return;
    }
    let log = ok(read_log(path, LogFormat::ObpCsv));
    assert_eq!(log.events.len(), 10_000);
    assert_eq!(log.actions.len(), 80);
    assert_eq!(log.positions, 3);
    assert!(log.events.iter().all(|e| e.pscore == 0.0125));
    assert_eq!(log.events.iter().map(|e| e.reward).sum::<f64>(), 38.0);
    assert!(log
        .context_names
        .iter()
        .all(|c| c.starts_with("user_feature_")
            || c.starts_with("uf")
            || c.starts_with("affinity_")));
    eprintln!(
        "OBD random log: {} context columns",
        log.context_names.len()
    );
}

fn dsjson(
    cost: f64,
    chosen: usize,
    a: &[usize],
    p: &[f64],
    features: &str,
    position: usize,
) -> String {
    let label_p = a.iter().position(|&x| x == chosen).map_or(0.5, |i| p[i]);
    format!(
        r#"{{"_label_cost":{cost},"_label_probability":{label_p},"_label_Action":{chosen},"_labelIndex":{},"o":[],"Timestamp":"2024-02-29T12:34:56Z","EventId":"e","a":{a:?},"p":{p:?},"c":{{"segment":"s","features":{{{features}}},"_multi":[{{"arm":"red"}},{{"arm":"blue"}},{{"arm":"green"}}]}},"_banditd":{{"campaign":"c1","outcome":"reward","position":{position}}}}}"#,
        chosen - 1
    )
}

// banditd DSJSON: actions from _multi, reward = −cost, context columns in first-seen order, p mapped by a.
#[test]
fn banditd_lines() {
    let text = [
        dsjson(-1.0, 2, &[2, 1, 3], &[0.5, 0.25, 0.25], r#""b":1,"a":2"#, 0),
        String::new(),
        dsjson(
            0.0,
            3,
            &[3, 2, 1],
            &[0.2, 0.3, 0.5],
            r#""a":4,"b":3,"c":5"#,
            1,
        ),
        dsjson(
            -0.5,
            1,
            &[1, 2, 3],
            &[0.6, 0.2, 0.2],
            r#""c":1,"b":2,"a":3"#,
            0,
        ),
    ]
    .join("\n");
    // Line 1 lacks feature c: an error naming line 1 and c.
    assert_eq!(
        location(parse_banditd(&text, "log.json")),
        (1, Some("c.features.c".to_string()))
    );
    let text = text.replacen(r#""b":1,"a":2"#, r#""b":1,"a":2,"c":0"#, 1);
    let log = ok(parse_banditd(&text, "log.json"));
    assert_eq!(log.actions, vec!["red", "blue", "green"]);
    assert_eq!(log.context_names, vec!["a", "b", "c"]);
    assert_eq!(log.positions, 2);
    assert_eq!(log.format, LogFormat::Banditd);
    let e: Vec<_> = log
        .events
        .iter()
        .map(|e| (e.action, e.position, e.reward, e.pscore))
        .collect();
    assert_eq!(
        e,
        vec![(1, 0, 1.0, 0.5), (2, 1, 0.0, 0.2), (0, 0, 0.5, 0.6)]
    );
    assert_eq!(log.events[0].context, vec![2.0, 1.0, 0.0]);
    assert_eq!(log.events[1].logged_probs, Some(vec![0.5, 0.3, 0.2]));
    assert_eq!(log.events[0].timestamp_ms, Some(1_709_210_096_000));
}

// Inconsistent DSJSON lines are errors naming the line and the field.
#[test]
fn banditd_mismatches_are_located() {
    let good = dsjson(0.0, 1, &[1, 2, 3], &[0.5, 0.25, 0.25], r#""x":1"#, 0);
    let cases = [
        (
            good.replace(r#""_label_probability":0.5"#, r#""_label_probability":0.4"#),
            "_label_probability",
        ),
        (
            dsjson(0.0, 1, &[1, 1, 3], &[0.5, 0.25, 0.25], "", 0),
            "a[1]",
        ),
        (
            dsjson(0.0, 1, &[1, 2, 4], &[0.5, 0.25, 0.25], "", 0),
            "a[2]",
        ),
        (dsjson(0.0, 1, &[1, 2, 3], &[0.5, 0.5, 0.25], "", 0), "p"),
        (dsjson(0.0, 1, &[1, 2], &[0.5, 0.5], "", 0), "a"),
        (
            good.replace(r#""_labelIndex":0"#, r#""_labelIndex":1"#),
            "_labelIndex",
        ),
        (good.replace(r#""x":1"#, r#""x":"big""#), "c.features.x"),
        (good.replace("2024-02-29T", "2023-02-29T"), "Timestamp"),
        (
            good.replace(r#""campaign":"c1""#, r#""campaign":"c2""#),
            "_banditd.campaign",
        ),
        (
            good.replace(r#""_label_cost":0"#, r#""cost":0"#),
            "_label_cost",
        ),
    ];
    for (bad, field) in cases {
        let text = format!("{good}\n\n{bad}\n");
        assert_eq!(
            location(parse_banditd(&text, "log.json")),
            (3, Some(field.to_string())),
            "{bad}"
        );
    }
    assert_eq!(location(parse_banditd("{not json", "log.json")), (1, None));
}

// RFC 3339 times with fractions and offsets; impossible dates are refused.
#[test]
fn rfc3339_times() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339_ms("2019-11-24T00:00:34.762830Z"),
        Some(1_574_553_634_762)
    );
    assert_eq!(
        parse_rfc3339_ms("2024-02-29T14:34:56+02:00"),
        Some(1_709_210_096_000)
    );
    assert_eq!(
        parse_rfc3339_ms("2024-02-29T07:34:56.5-05:00"),
        Some(1_709_210_096_500)
    );
    for bad in [
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "1969-12-31T23:59:59Z",
        "2024-01-01T00:00:00+0200",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
    }
}

// A plain Vowpal Wabbit DSJSON line (no `_banditd`, no `c.features`, 7-digit fraction) reads as position 0, no context.
#[test]
fn banditd_reads_plain_vw_dsjson() {
    let line = r#"{"_label_cost":-1.0,"_label_probability":0.5,"_label_Action":2,"_labelIndex":1,"o":[{"v":1.0,"EventId":"ev-3","ActionTaken":false}],"Timestamp":"2024-01-01T00:00:03.0000000Z","Version":"1","EventId":"ev-3","a":[2,3,1],"c":{"User":{"segment":"sports","age":27.0},"_multi":[{"arm":"a"},{"arm":"b"},{"arm":"c"}]},"p":[0.5,0.25,0.25],"VWState":{"m":"N/A"}}"#;
    let log = ok(parse_banditd(&format!("{line}\n{line}\n"), "vw.json"));
    assert_eq!(log.actions, vec!["a", "b", "c"]);
    assert!(log.context_names.is_empty());
    let e = &log.events[1];
    assert_eq!((e.action, e.position, e.reward, e.pscore), (1, 0, 1.0, 0.5));
    assert_eq!(e.logged_probs, Some(vec![0.25, 0.5, 0.25]));
    assert_eq!(e.timestamp_ms, Some(1_704_067_203_000));
}
