//! Regions: named WKT polygons or multipolygons in longitude/latitude (WGS 84) order.

use geo::{MultiPolygon, Polygon, Validation};
use serde::{Deserialize, Serialize};

/// `[[regions]]` as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Name used in output and the `region` metric label.
    pub name: String,
    /// `POLYGON((lon lat, ...))` or `MULTIPOLYGON(((...)))`, longitude first.
    pub wkt: String,
}

/// A region with its parsed geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Name used in output and the `region` metric label.
    pub name: String,
    /// Geometry; a polygon is stored as a one-element multipolygon.
    pub geometry: MultiPolygon<f64>,
}

/// Parses WKT into a multipolygon, or says what was found instead.
pub fn parse_wkt_area(text: &str) -> Result<MultiPolygon<f64>, String> {
    use std::str::FromStr;
    let parsed = wkt::Wkt::<f64>::from_str(text).map_err(|e| e.to_string())?;
    // geo closes open rings silently on conversion: check closure on the WKT as written.
    if let Some(ring) = unclosed_ring(&parsed) {
        return Err(format!(
            "{ring} is not closed (its last point must repeat its first)"
        ));
    }
    let geometry: geo::Geometry<f64> = parsed
        .try_into()
        .map_err(|e: wkt::geo_types_from_wkt::Error| e.to_string())?;
    let area = match geometry {
        geo::Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
        geo::Geometry::MultiPolygon(mp) => mp,
        other => return Err(format!("got {}", geometry_kind(&other))),
    };
    if area.0.is_empty()
        || area
            .0
            .iter()
            .any(|p: &Polygon<f64>| p.exterior().0.len() < 4)
    {
        return Err("a polygon needs a closed ring of at least 4 points".into());
    }
    // Self-intersection, repeated rings, holes outside their polygon, overlapping parts.
    let problems: Vec<String> = match area.0.as_slice() {
        [polygon] => polygon
            .validation_errors()
            .iter()
            .map(|e| e.to_string())
            .collect(),
        _ => area
            .validation_errors()
            .iter()
            .map(|e| e.to_string())
            .collect(),
    };
    if !problems.is_empty() {
        return Err(format!("invalid geometry: {}", problems.join("; ")));
    }
    Ok(area)
}

/// The first ring whose last point is not its first, named for a message.
fn unclosed_ring(wkt: &wkt::Wkt<f64>) -> Option<String> {
    let polygons: Vec<&wkt::types::Polygon<f64>> = match wkt {
        wkt::Wkt::Polygon(p) => vec![p],
        wkt::Wkt::MultiPolygon(mp) => mp.polygons().iter().collect(),
        _ => return None,
    };
    let single = polygons.len() == 1;
    polygons.iter().enumerate().find_map(|(p, polygon)| {
        polygon.rings().iter().enumerate().find_map(|(r, ring)| {
            let coords = ring.coords();
            let (first, last) = (coords.first()?, coords.last()?);
            let closed = first.x == last.x && first.y == last.y;
            let role = if r == 0 {
                "exterior ring".to_string()
            } else {
                format!("interior ring {}", r - 1)
            };
            let polygon = if single {
                String::new()
            } else {
                format!(" of polygon {p}")
            };
            (!closed).then(|| format!("the {role}{polygon}"))
        })
    })
}

fn geometry_kind(g: &geo::Geometry<f64>) -> &'static str {
    match g {
        geo::Geometry::Point(_) => "POINT",
        geo::Geometry::Line(_) | geo::Geometry::LineString(_) => "LINESTRING",
        geo::Geometry::MultiPoint(_) => "MULTIPOINT",
        geo::Geometry::MultiLineString(_) => "MULTILINESTRING",
        geo::Geometry::GeometryCollection(_) => "GEOMETRYCOLLECTION",
        geo::Geometry::Rect(_) => "RECT",
        geo::Geometry::Triangle(_) => "TRIANGLE",
        geo::Geometry::Polygon(_) => "POLYGON",
        geo::Geometry::MultiPolygon(_) => "MULTIPOLYGON",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_and_multipolygon_parse() {
        let p = parse_wkt_area("POLYGON((-5 51, 9 51, 9 62, -5 62, -5 51))").unwrap();
        assert_eq!(p.0.len(), 1);
        let mp =
            parse_wkt_area("MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))").unwrap();
        assert_eq!(mp.0.len(), 2);
    }

    #[test]
    fn other_geometries_are_refused_with_their_kind() {
        let err = parse_wkt_area("POINT(1 2)").unwrap_err();
        assert!(err.contains("POINT"), "{err}");
        assert!(parse_wkt_area("POLYGON((0 0, 1 1").is_err());
    }
}
