//! [`RegionIndex`]: which configured regions contain a point.
//!
//! Every polygon of every region is one entry of an R-tree over bounding boxes, so a lookup
//! costs O(log polygons) plus the exact tests of the few polygons whose box holds the point.
//! Axis-aligned rectangles without holes (the usual "sea box") are recognised once when the
//! index is built: for them the box test is already exact. Other polygons are tested with
//! `geo`'s robust [`CoordinatePosition`].
//!
//! Semantics: a point on the boundary (an edge or a vertex, of the exterior or of a hole)
//! counts as inside; a point strictly inside a hole is outside; a point may lie in several
//! regions; a null, NaN or infinite coordinate lies in no region.

use geo::coordinate_position::{CoordPos, CoordinatePosition};
use geo::{BoundingRect, Coord, Polygon};
use oceanflow_config::Region;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{Envelope, ParentNode, RTree, RTreeNode, RTreeObject};

/// An R-tree entry: the bounding box of one polygon and the polygon's index in `parts`.
type Entry = GeomWithData<Rectangle<[f64; 2]>, u32>;

/// One polygon of a region, with what its exact test needs.
#[derive(Debug, Clone)]
struct Part {
    region: u32,
    /// `None` when the polygon is an axis-aligned rectangle without holes.
    exact: Option<Polygon<f64>>,
}

/// A spatial index over the polygons of the configured regions.
#[derive(Debug, Clone)]
pub struct RegionIndex {
    tree: RTree<Entry>,
    parts: Vec<Part>,
}

impl RegionIndex {
    /// Indexes `regions`; region ids are indices into `regions`. Polygons without a bounding
    /// box (empty rings) are ignored.
    pub fn new(regions: &[Region]) -> RegionIndex {
        let mut parts = Vec::new();
        let mut boxes = Vec::new();
        for (id, region) in (0u32..).zip(regions) {
            for polygon in &region.geometry.0 {
                let Some(rect) = polygon.bounding_rect() else {
                    continue;
                };
                let (lo, hi) = (rect.min(), rect.max());
                let part = u32::try_from(parts.len()).unwrap_or(u32::MAX);
                boxes.push(GeomWithData::new(
                    Rectangle::from_corners([lo.x, lo.y], [hi.x, hi.y]),
                    part,
                ));
                parts.push(Part {
                    region: id,
                    exact: (!is_plain_rectangle(polygon)).then(|| polygon.clone()),
                });
            }
        }
        RegionIndex {
            tree: RTree::bulk_load(boxes),
            parts,
        }
    }

    /// Whether no polygon is indexed (then no point is in any region).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Replaces `out` with the ids of the regions containing (`lon`, `lat`), ascending and
    /// without repeats (a point in two polygons of one multipolygon is reported once).
    pub fn regions_containing(&self, lon: f64, lat: f64, out: &mut Vec<u32>) {
        out.clear();
        if !(lon.is_finite() && lat.is_finite()) || self.parts.is_empty() {
            return;
        }
        self.visit(self.tree.root(), [lon, lat], out);
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

impl RegionIndex {
    /// Pushes the regions of the polygons under `node` containing `point`. A plain descent
    /// (rather than rstar's selection iterator, which copies a stack per query) because it
    /// runs once per row.
    fn visit(&self, node: &ParentNode<Entry>, point: [f64; 2], out: &mut Vec<u32>) {
        for child in node.children() {
            match child {
                RTreeNode::Leaf(entry) => {
                    if entry.envelope().contains_point(&point) {
                        self.test_part(entry.data, point, out);
                    }
                }
                RTreeNode::Parent(inner) => {
                    if inner.envelope().contains_point(&point) {
                        self.visit(inner, point, out);
                    }
                }
            }
        }
    }

    /// The exact test of one polygon whose box contains `point`.
    fn test_part(&self, part: u32, [x, y]: [f64; 2], out: &mut Vec<u32>) {
        let Some(part) = self.parts.get(part as usize) else {
            return;
        };
        let inside = match &part.exact {
            None => true,
            Some(polygon) => polygon.coordinate_position(&Coord { x, y }) != CoordPos::Outside,
        };
        if inside {
            out.push(part.region);
        }
    }
}

/// Whether `polygon` is exactly its bounding box: no holes and a closed exterior ring of four
/// distinct corners joined by axis-parallel edges.
fn is_plain_rectangle(polygon: &Polygon<f64>) -> bool {
    let ring = &polygon.exterior().0;
    if !polygon.interiors().is_empty() || ring.len() != 5 || ring[0] != ring[4] {
        return false;
    }
    let axis_parallel = ring
        .windows(2)
        .all(|edge| edge[0].x == edge[1].x || edge[0].y == edge[1].y);
    let alternating = ring.windows(3).all(|w| {
        let first_vertical = w[0].x == w[1].x;
        let second_vertical = w[1].x == w[2].x;
        first_vertical != second_vertical
    });
    axis_parallel && alternating
}

#[cfg(test)]
mod tests {
    use super::*;
    use oceanflow_config::region::parse_wkt_area;

    fn index(wkts: &[&str]) -> RegionIndex {
        let regions: Vec<Region> = wkts
            .iter()
            .enumerate()
            .map(|(i, w)| Region {
                name: format!("r{i}"),
                geometry: parse_wkt_area(w).unwrap(),
            })
            .collect();
        RegionIndex::new(&regions)
    }

    fn at(index: &RegionIndex, lon: f64, lat: f64) -> Vec<u32> {
        let mut out = vec![99];
        index.regions_containing(lon, lat, &mut out);
        out
    }

    #[test]
    fn rectangle_is_recognised_and_boundary_inclusive() {
        let idx = index(&["POLYGON((0 0, 10 0, 10 5, 0 5, 0 0))"]);
        assert!(idx.parts[0].exact.is_none());
        for (lon, lat) in [(5.0, 2.0), (0.0, 0.0), (10.0, 5.0), (10.0, 2.5), (3.0, 0.0)] {
            assert_eq!(at(&idx, lon, lat), vec![0], "({lon}, {lat})");
        }
        for (lon, lat) in [(-0.001, 2.0), (10.0, 5.0001), (11.0, 6.0)] {
            assert!(at(&idx, lon, lat).is_empty(), "({lon}, {lat})");
        }
    }

    #[test]
    fn triangle_edges_and_vertices_are_inside() {
        let idx = index(&["POLYGON((0 0, 4 0, 0 4, 0 0))"]);
        assert!(idx.parts[0].exact.is_some());
        for (lon, lat) in [(1.0, 1.0), (2.0, 2.0), (0.0, 4.0), (4.0, 0.0), (0.0, 2.0)] {
            assert_eq!(at(&idx, lon, lat), vec![0], "({lon}, {lat})");
        }
        // Inside the bounding box but outside the triangle.
        assert!(at(&idx, 3.0, 3.0).is_empty());
        assert!(at(&idx, 2.5, 2.0).is_empty());
    }

    #[test]
    fn holes_exclude_but_their_boundary_is_inside() {
        let idx = index(&["POLYGON((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))"]);
        assert!(idx.parts[0].exact.is_some());
        assert!(at(&idx, 5.0, 5.0).is_empty());
        assert_eq!(at(&idx, 4.0, 5.0), vec![0]);
        assert_eq!(at(&idx, 6.0, 6.0), vec![0]);
        assert_eq!(at(&idx, 2.0, 2.0), vec![0]);
    }

    #[test]
    fn multipolygons_and_overlapping_regions() {
        // Two parts sharing an edge: invalid WKT for a config (validation refuses it), but the
        // index must still report a point on the edge once, so the geometry is built directly.
        let square = |x0: f64| {
            Polygon::new(
                geo::LineString::from(vec![
                    (x0, 0.0),
                    (x0 + 2.0, 0.0),
                    (x0 + 2.0, 2.0),
                    (x0, 2.0),
                    (x0, 0.0),
                ]),
                Vec::new(),
            )
        };
        let regions = vec![
            Region {
                name: "r0".into(),
                geometry: geo::MultiPolygon(vec![square(0.0), square(2.0)]),
            },
            Region {
                name: "r1".into(),
                geometry: parse_wkt_area("POLYGON((1 1, 3 1, 3 3, 1 3, 1 1))").unwrap(),
            },
        ];
        let idx = RegionIndex::new(&regions);
        // On the shared edge of both parts of region 0: reported once.
        assert_eq!(at(&idx, 2.0, 0.5), vec![0]);
        assert_eq!(at(&idx, 2.0, 1.0), vec![0, 1]);
        assert_eq!(at(&idx, 3.5, 0.5), vec![0]);
        assert_eq!(at(&idx, 1.5, 1.5), vec![0, 1]);
        assert_eq!(at(&idx, 2.0, 2.5), vec![1]);
    }

    #[test]
    fn null_nan_and_infinite_positions_are_in_no_region() {
        let idx = index(&["POLYGON((-180 -90, 180 -90, 180 90, -180 90, -180 -90))"]);
        assert_eq!(at(&idx, 0.0, 0.0), vec![0]);
        assert!(at(&idx, f64::NAN, 0.0).is_empty());
        assert!(at(&idx, 0.0, f64::INFINITY).is_empty());
        assert!(index(&[]).is_empty());
        assert!(at(&index(&[]), 0.0, 0.0).is_empty());
    }

    #[test]
    fn rectangle_detection_rejects_near_rectangles() {
        let skewed = parse_wkt_area("POLYGON((0 0, 10 0, 10 5, 1 5, 0 0))").unwrap();
        assert!(!is_plain_rectangle(&skewed.0[0]));
        let clockwise = parse_wkt_area("POLYGON((0 0, 0 5, 10 5, 10 0, 0 0))").unwrap();
        assert!(is_plain_rectangle(&clockwise.0[0]));
    }
}
