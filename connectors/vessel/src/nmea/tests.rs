use proptest::prelude::*;

use super::*;

const V: ChecksumPolicy = ChecksumPolicy::Verify;

fn ok(s: &str) -> Sentence<'_> {
    parse(s.as_bytes(), V).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("value present");
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

/// Appends the checksum NMEA computes over `body` (without `$`). Leaked: a few bytes per
/// test, so parsed sentences can borrow it.
fn with_checksum(body: &str) -> &'static str {
    let x = body.bytes().fold(0u8, |a, b| a ^ b);
    Box::leak(format!("${body}*{x:02X}").into_boxed_str())
}

#[test]
fn gga_from_the_seapath_log() {
    let s = ok("$INGGA,000000.16,2200.110899,S,01756.359432,W,1,12,0.7,-2.76,M,4.67,M,,*6C");
    assert_eq!(s.kind, Kind::Gga);
    assert_eq!(s.talker, b"IN");
    let (lat, lon) = s.fix.unwrap();
    assert!((lat + (22.0 + 0.110899 / 60.0)).abs() < 1e-12);
    assert!((lon + (17.0 + 56.359432 / 60.0)).abs() < 1e-12);
    close(s.values[2], 1.0);
    close(s.values[3], 12.0);
    close(s.values[4], 0.7);
    close(s.values[5], -2.76);
    close(s.values[6], 4.67);
    assert_eq!(s.time.time_of_day_us, Some(160_000));
    assert_eq!(s.time.days, None);
}

#[test]
fn gga_without_fix_quality_is_no_fix() {
    let s = ok(with_checksum(
        "GPGGA,120000,4530.0,N,00830.0,E,0,00,,,M,,M,,",
    ));
    assert_eq!(s.fix, None);
    close(s.values[0], 45.5);
    close(s.values[1], 8.5);
}

#[test]
fn gll_rmc_vtg_zda_from_the_pcod_log() {
    let gll = ok("$GPGLL,2200.1091,S,01756.3580,W,235959.226,A*3E");
    assert_eq!(gll.kind, Kind::Gll);
    assert!(gll.fix.is_some());
    assert_eq!(gll.time.time_of_day_us, Some(86_399_226_000));

    let rmc = ok("$GPRMC,235959.226,A,2200.1091,S,01756.3580,W,009.7,220.2,151294,24.9,W*49");
    assert_eq!(rmc.kind, Kind::Rmc);
    close(rmc.values[2], 9.7);
    close(rmc.values[3], 9.7 * 1852.0 / 3600.0);
    close(rmc.values[4], 220.2);
    close(rmc.values[5], -24.9);
    assert_eq!(rmc.time.days, Some(days_from_civil(1994, 12, 15)));

    let vtg = ok("$GPVTG,220.2,T,245.1,M,009.7,N,018.0,K*49");
    assert_eq!(vtg.kind, Kind::Vtg);
    close(vtg.values[0], 220.2);
    close(vtg.values[1], 245.1);
    close(vtg.values[2], 9.7);

    let zda = ok("$GPZDA,000000.00,16,12,1994,00,00,*4B");
    assert_eq!(zda.kind, Kind::Zda);
    assert_eq!(
        zda.time.instant_us(),
        Some(days_from_civil(1994, 12, 16) * DAY_US)
    );
    let zda = ok("$INZDA,000000.17,01,08,2014,,*7E");
    assert_eq!(zda.time.days, Some(days_from_civil(2014, 8, 1)));
    assert_eq!(zda.values[0], None);
}

#[test]
fn rmc_void_status_gives_no_fix_and_two_digit_years_pivot_at_1980() {
    let s = ok(with_checksum("GPRMC,010203,V,,,,,,,010180,,"));
    assert_eq!(s.fix, None);
    assert_eq!(s.time.days, Some(days_from_civil(1980, 1, 1)));
    let s = ok(with_checksum(
        "GPRMC,010203,A,0100.0,N,00100.0,E,1,2,311279,,",
    ));
    assert_eq!(s.time.days, Some(days_from_civil(2079, 12, 31)));
    assert!(parse(
        with_checksum("GPRMC,010203,A,0100.0,N,00100.0,E,1,2,310279,,").as_bytes(),
        V
    )
    .is_err());
}

#[test]
fn headings_depths_temperatures_and_wind() {
    close(ok("$HEHDT,218.53,T*12").values[0], 218.53);
    let dpt = ok("$KIDPT,4674.70,8.62,12000.0*79");
    assert_eq!(dpt.kind, Kind::Dpt);
    assert_eq!(dpt.talker, b"KI");
    close(dpt.values[0], 4674.70);
    close(dpt.values[1], 8.62);
    close(dpt.values[2], 12000.0);
    let old_dpt = ok(with_checksum("SDDPT,12.5,0.5"));
    close(old_dpt.values[0], 12.5);
    assert_eq!(old_dpt.values[2], None);
    close(
        ok(with_checksum("SDDBT,41.0,f,12.5,M,6.8,F")).values[0],
        12.5,
    );
    close(ok(with_checksum("YXMTW,17.3,C")).values[0], 17.3);
    let mwv = ok(with_checksum("WIMWV,045.0,R,10.0,N,A"));
    close(mwv.values[0], 45.0);
    close(mwv.values[1], 10.0 * 1852.0 / 3600.0);
    let void = ok(with_checksum("WIMWV,045.0,R,10.0,M,V"));
    assert_eq!(void.values[..2], [None, None]);
    let kmh = ok(with_checksum("WIMWV,270,T,36,K,A"));
    close(kmh.values[1], 10.0);
}

#[test]
fn xdr_measurements_by_name() {
    let s = ok(with_checksum(
        "WIXDR,C,19.5,C,AIRTEMP,P,1.013,B,BARO,H,80,P,RH",
    ));
    assert_eq!(s.kind, Kind::Xdr);
    close(s.xdr_value(b"AIRTEMP"), 19.5);
    close(s.xdr_value(b"BARO"), 1.013);
    close(s.xdr_value(b"RH"), 80.0);
    assert_eq!(s.xdr_value(b"WIND"), None);
}

#[test]
fn proprietary_seapath_and_uhdas_sentences() {
    let s = ok("$PSXN,20,1,0,0,0*3A");
    assert_eq!(s.kind, Kind::Psxn20);
    close(s.values[0], 1.0);
    let s = ok("$PSXN,22,0.03,-0.80*1F");
    assert_eq!(s.kind, Kind::Psxn22);
    close(s.values[1], -0.80);
    let s = ok("$PSXN,23,0.35,-1.74,218.26,0.58*13");
    assert_eq!(s.kind, Kind::Psxn23);
    close(s.values[0], 0.35);
    close(s.values[1], -1.74);
    close(s.values[2], 218.26);
    close(s.values[3], 0.58);
    let s = ok("$PUHAW,UVH,-7.44,-5.15,236.3");
    assert_eq!(s.kind, Kind::PuhawUvh);
    close(s.values[0], -7.44);
    close(s.values[2], 236.3);
    assert_eq!(ok(with_checksum("PSXN,21,1")).kind, Kind::Unsupported);
    assert_eq!(ok(with_checksum("PGRMZ,1,f,3")).kind, Kind::Unsupported);
}

#[test]
fn checksums_good_bad_absent_and_lowercase() {
    assert!(parse(b"$HEHDT,218.19,T*1c", V).is_ok(), "lower-case hex");
    assert_eq!(
        parse(b"$HEHDT,218.19,T*1D", V),
        Err(ParseError::BadChecksum {
            stated: 0x1D,
            computed: 0x1C
        })
    );
    assert!(parse(b"$HEHDT,218.19,T*1D", ChecksumPolicy::Ignore).is_ok());
    assert!(
        parse(b"$HEHDT,218.19,T", V).is_ok(),
        "absent: accepted by verify"
    );
    assert_eq!(
        parse(b"$HEHDT,218.19,T", ChecksumPolicy::Require),
        Err(ParseError::MissingChecksum)
    );
    assert_eq!(
        parse(b"$HEHDT,218.19,T*1", V),
        Err(ParseError::MalformedChecksum)
    );
    assert_eq!(
        parse(b"$HEHDT,218.19,T*XY", V),
        Err(ParseError::MalformedChecksum)
    );
    let bad = parse(b"$HEHDT,218.19,T*1D", V).unwrap_err();
    assert!(bad.is_checksum());
    assert_eq!(bad.reason(), "bad_checksum");
}

#[test]
fn truncated_and_garbage_lines_are_precise_errors() {
    assert_eq!(parse(b"", V), Err(ParseError::Empty));
    assert_eq!(parse(b"GPGGA,1", V), Err(ParseError::NoStart));
    assert_eq!(
        parse(b"$INGGA,000000.16,2200.110899,S,01756.3", V),
        Err(ParseError::TooFewFields("GGA"))
    );
    assert_eq!(parse(b"$GPRMC", V), Err(ParseError::TooFewFields("RMC")));
    assert_eq!(parse(b"$GPXXXXX,1", V), Err(ParseError::BadAddress));
    assert_eq!(parse(b"$G,1", V), Err(ParseError::BadAddress));
    assert_eq!(
        parse(b"$HEHDT,21x.5,T", V),
        Err(ParseError::BadField {
            sentence: "HDT",
            field: "heading"
        })
    );
    assert_eq!(
        parse(b"$GPGLL,2200.1091,Q,01756.3580,W,235959.226,A", V),
        Err(ParseError::BadField {
            sentence: "GLL",
            field: "latitude"
        })
    );
    assert_eq!(
        parse(b"$GPGLL,9100.0,N,01756.3580,W,235959.226,A", V)
            .unwrap_err()
            .reason(),
        "bad_field"
    );
    assert_eq!(
        parse(b"$GPGLL,2260.0,N,01756.3580,W,235959.226,A", V)
            .unwrap_err()
            .reason(),
        "bad_field",
        "60 minutes"
    );
    assert_eq!(
        parse(b"$GPGGA,256000,2200.1,S,01756.3,W,1,1,1,1,M,1,M,,", V)
            .unwrap_err()
            .reason(),
        "bad_field",
        "hour 25"
    );
    assert_eq!(
        parse(b"$HEHDT,2\xff8.5,T", V),
        Err(ParseError::NonAscii(0xff))
    );
}

#[test]
fn several_sentences_in_one_datagram_are_split() {
    let datagram = b"$INHDT,218.26,T*1A\r\n$PSXN,20,1,0,0,0*3A$PSXN,22,0.03,-0.80*1F\r\n\r\njunk$HEHDT,218.53,T*12";
    let pieces: Vec<&[u8]> = split_sentences(datagram).collect();
    assert_eq!(
        pieces,
        [
            &b"$INHDT,218.26,T*1A"[..],
            b"$PSXN,20,1,0,0,0*3A",
            b"$PSXN,22,0.03,-0.80*1F",
            b"junk",
            b"$HEHDT,218.53,T*12"
        ]
    );
    let kinds: Vec<_> = pieces.iter().map(|p| parse(p, V).map(|s| s.kind)).collect();
    assert_eq!(kinds[3], Err(ParseError::NoStart));
    assert_eq!(kinds[4], Ok(Kind::Hdt));
    assert_eq!(split_sentences(b"  \r\n ").count(), 0);
}

#[test]
fn numbers_parse_like_std_and_reject_junk() {
    for text in [
        "0",
        "-0.5",
        "+3",
        "033.6",
        "1528.105",
        "12345678901234.5",
        "1e3",
        "123456789012345678",
    ] {
        assert_eq!(
            parse_number(text.as_bytes()),
            Ok(Some(text.parse::<f64>().unwrap())),
            "{text}"
        );
    }
    assert_eq!(parse_number(b""), Ok(None));
    for bad in [&b"-"[..], b".", b"1.2.3", b"NaN", b"inf", b"12a", b"--1"] {
        assert_eq!(
            parse_number(bad),
            Err(()),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn every_configurable_field_resolves_to_a_kind_and_value_slot() {
    for (sentence, fields) in oceanflow_config::source::vessel::NMEA_FIELDS {
        let kind = Kind::from_name(sentence).unwrap_or_else(|| panic!("{sentence}"));
        assert!(fields.len() <= MAX_VALUES, "{sentence}");
        assert_ne!(kind, Kind::Unsupported);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Arbitrary bytes never panic, under every policy.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        for policy in [ChecksumPolicy::Verify, ChecksumPolicy::Require, ChecksumPolicy::Ignore] {
            for piece in split_sentences(&bytes) {
                let _ = parse(piece, policy);
            }
            let _ = parse(&bytes, policy);
        }
    }

    /// The word-at-a-time checksum equals the bytewise one on any input.
    #[test]
    fn word_checksum_equals_bytewise(bytes in proptest::collection::vec(
        prop_oneof![4 => 0x20u8..0x7f, 1 => any::<u8>()],
        0..100,
    )) {
        prop_assert_eq!(xor_printable(&bytes), xor_printable_bytes(&bytes));
    }

    /// Mutations of real sentences (bit flips, cuts, splices) never panic, and a flipped
    /// byte in a checksummed sentence is caught (or leaves it parseable).
    #[test]
    fn mutated_real_sentences_never_panic(
        which in 0usize..8,
        cut in 0usize..120,
        flip_at in 0usize..120,
        flip_bit in 0u8..8,
        splice in "[$!,*.0-9A-Z]{0,12}",
    ) {
        let real = [
            "$INGGA,000000.16,2200.110899,S,01756.359432,W,1,12,0.7,-2.76,M,4.67,M,,*6C",
            "$GPRMC,235959.226,A,2200.1091,S,01756.3580,W,009.7,220.2,151294,24.9,W*49",
            "$GPZDA,000000.00,16,12,1994,00,00,*4B",
            "$GPVTG,220.2,T,245.1,M,009.7,N,018.0,K*49",
            "$PSXN,23,0.35,-1.74,218.26,0.58*13",
            "$KIDPT,4674.70,8.62,12000.0*79",
            "$GPGLL,2200.1091,S,01756.3580,W,235959.226,A*3E",
            "$WIXDR,C,19.5,C,AIRTEMP,P,1.013,B,BARO*00",
        ];
        let mut s = real[which].as_bytes().to_vec();
        let i = flip_at % s.len();
        s[i] ^= 1 << flip_bit;
        let _ = parse(&s, ChecksumPolicy::Verify);
        s.truncate(cut.min(s.len()));
        s.extend_from_slice(splice.as_bytes());
        for piece in split_sentences(&s) {
            let _ = parse(piece, ChecksumPolicy::Ignore);
            let _ = parse(piece, ChecksumPolicy::Verify);
        }
    }
}
