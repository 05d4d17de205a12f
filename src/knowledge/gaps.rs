//! Knowledge gaps: the questions no card covered, grouped by what they ask. Average-linkage
//! hierarchical clustering (kodama) over the questions' topic vectors (unit length, each
//! language's center taken away, so that a Chinese and an English question about the same thing
//! meet), cut where the average similarity between two groups falls below `similarity`. Average
//! linkage, not single: one bridging question must not chain two topics into one gap.

use crate::vecmath::dot;

/// One gap: the indices of its questions, and the one most like the others (its label).
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub members: Vec<usize>,
    pub representative: usize,
}

/// Groups unit vectors: two groups join while their average cosine is at least `similarity`.
/// Largest groups first; within a group, indices in order.
pub fn cluster(vectors: &[Vec<f32>], similarity: f32) -> Vec<Cluster> {
    let n = vectors.len();
    let mut parent: Vec<usize> = (0..n).collect();
    if n > 1 {
        let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
        for i in 0..n {
            for j in i + 1..n {
                // Rounding can put a unit vector's cosine with itself a hair above 1.
                condensed.push((1.0 - dot(&vectors[i], &vectors[j])).max(0.0));
            }
        }
        let tree = kodama::linkage(&mut condensed, n, kodama::Method::Average);
        // Step k makes cluster n + k; `root[c]` is an observation standing for cluster c.
        let mut root: Vec<usize> = (0..n).collect();
        for step in tree.steps() {
            let (a, b) = (root[step.cluster1], root[step.cluster2]);
            root.push(a);
            // Average linkage never merges below an earlier merge: the first step past the cut
            // ends the grouping.
            if step.dissimilarity > 1.0 - similarity {
                break;
            }
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            parent[rb] = ra;
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut clusters: Vec<Cluster> = groups
        .into_values()
        .map(|members| Cluster {
            representative: medoid(vectors, &members),
            members,
        })
        .collect();
    clusters.sort_by_key(|c| (std::cmp::Reverse(c.members.len()), c.members[0]));
    clusters
}

/// The cluster a further question belongs to: the one whose members it is most similar to on
/// average, when that average reaches `similarity` (the rule that grouped them).
pub fn assign(
    vectors: &[Vec<f32>],
    clusters: &[Cluster],
    question: &[f32],
    similarity: f32,
) -> Option<usize> {
    clusters
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let sum: f32 = c.members.iter().map(|&i| dot(&vectors[i], question)).sum();
            (k, sum / c.members.len() as f32)
        })
        .filter(|(_, s)| *s >= similarity)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The member most similar to the others on average (the first of equals).
fn medoid(vectors: &[Vec<f32>], members: &[usize]) -> usize {
    let mut best = (members[0], f32::MIN);
    for &i in members {
        let s: f32 = members
            .iter()
            .filter(|&&j| j != i)
            .map(|&j| dot(&vectors[i], &vectors[j]))
            .sum();
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn near_vectors_group_and_far_ones_stay_apart() {
        let v: Vec<Vec<f32>> = [
            [1.0, 0.05, 0.0],
            [0.0, 1.0, 0.0],
            [1.0, 0.0, 0.05],
            [0.05, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 0.02, 0.02],
        ]
        .iter()
        .map(|x| unit(x))
        .collect();
        let c = cluster(&v, 0.9);
        let groups: Vec<Vec<usize>> = c.iter().map(|c| c.members.clone()).collect();
        assert_eq!(groups, vec![vec![0, 2, 5], vec![1, 3], vec![4]]);
        // The middle one of the three is their label.
        assert_eq!(c[0].representative, 5);
        assert_eq!(assign(&v, &c, &unit(&[0.0, 0.9, 0.1]), 0.9), Some(1));
        assert_eq!(assign(&v, &c, &unit(&[1.0, 1.0, 1.0]), 0.9), None);
        // Everything joins at a low enough bar; nothing joins at 1.
        assert_eq!(cluster(&v, -1.0).len(), 1);
        assert_eq!(cluster(&v, 1.0).len(), 6);
        assert!(cluster(&[], 0.5).is_empty());
        assert_eq!(cluster(&v[..1], 0.5).len(), 1);
    }

    #[test]
    fn a_bridging_question_does_not_chain_two_topics() {
        // a1, a2 near a; b1, b2 near b; m halfway. Single linkage would join all five at 0.7.
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let v: Vec<Vec<f32>> = [a, [0.98, 0.2], [0.71, 0.71], [0.2, 0.98], b]
            .iter()
            .map(|x| unit(x))
            .collect();
        let c = cluster(&v, 0.7);
        assert!(c.len() >= 2, "{c:?}");
        assert!(
            c.iter()
                .all(|c| !(c.members.contains(&0) && c.members.contains(&4)))
        );
    }
}
