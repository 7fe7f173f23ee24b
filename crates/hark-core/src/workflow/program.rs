//! A workflow's step tree flattened into one list of nodes. A run's cursor is an index
//! into this list, so a run paused inside a nested branch resumes exactly there, and a
//! committed version (immutable) always compiles to the same program.

use super::{Step, StepKind};
use crate::conditions::ConditionGroup;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A step that does not choose a path; the run continues at the next node.
    Step(Step),
    /// Knock's branch step: the first arm whose conditions hold runs.
    Branch {
        step_ref: String,
        arms: Vec<BranchArm>,
        /// Where the run continues when no arm matches.
        after: usize,
    },
    /// Knock's experiment (random cohort) step.
    Cohort {
        step_ref: String,
        cohort_key: Option<String>,
        arms: Vec<CohortArm>,
        after: usize,
    },
    Goto(usize),
    /// The end of a terminating branch: the run completes here.
    Halt {
        step_ref: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BranchArm {
    pub name: String,
    pub conditions: Option<ConditionGroup>,
    pub start: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CohortArm {
    pub name: String,
    pub per_mille: u32,
    pub start: usize,
}

pub(crate) fn compile(steps: &[Step]) -> Vec<Node> {
    let mut out = Vec::new();
    emit(steps, &mut out);
    out
}

/// Emits each arm's steps followed by a jump past the whole step (or a halt), and returns
/// each arm's start and the index after the step.
fn emit_arms<'a>(
    step_ref: &str,
    arms: impl Iterator<Item = (&'a [Step], bool)>,
    out: &mut Vec<Node>,
) -> (Vec<usize>, usize) {
    let mut starts = Vec::new();
    let mut exits = Vec::new();
    for (steps, terminates) in arms {
        starts.push(out.len());
        emit(steps, out);
        if terminates {
            out.push(Node::Halt {
                step_ref: step_ref.to_string(),
            });
        } else {
            exits.push(out.len());
            out.push(Node::Goto(0));
        }
    }
    let after = out.len();
    for exit in exits {
        out[exit] = Node::Goto(after);
    }
    (starts, after)
}

fn emit(steps: &[Step], out: &mut Vec<Node>) {
    for step in steps {
        match &step.kind {
            StepKind::Branch(branches) => {
                let at = out.len();
                out.push(Node::Goto(0));
                let (starts, after) = emit_arms(
                    &step.step_ref,
                    branches.iter().map(|b| (b.steps.as_slice(), b.terminates)),
                    out,
                );
                out[at] = Node::Branch {
                    step_ref: step.step_ref.clone(),
                    arms: branches
                        .iter()
                        .zip(starts)
                        .map(|(b, start)| BranchArm {
                            name: b.name.clone(),
                            conditions: b.conditions.clone(),
                            start,
                        })
                        .collect(),
                    after,
                };
            }
            StepKind::RandomCohort(settings) => {
                let at = out.len();
                out.push(Node::Goto(0));
                let (starts, after) = emit_arms(
                    &step.step_ref,
                    settings
                        .branches
                        .iter()
                        .map(|b| (b.steps.as_slice(), b.terminates)),
                    out,
                );
                out[at] = Node::Cohort {
                    step_ref: step.step_ref.clone(),
                    cohort_key: settings.cohort_key.clone(),
                    arms: settings
                        .branches
                        .iter()
                        .zip(starts)
                        .map(|(b, start)| CohortArm {
                            name: b.name.clone(),
                            per_mille: b.per_mille,
                            start,
                        })
                        .collect(),
                    after,
                };
            }
            _ => out.push(Node::Step(step.clone())),
        }
    }
}

/// Which cohort arm a key falls in: a stable hash of the step and the key picks a point
/// in [0, 1000) and the arms split that range by their shares, in order.
pub fn cohort_index(step_ref: &str, key: &str, arms: &[CohortArm]) -> Option<usize> {
    let name = format!("{step_ref}\u{0}{key}");
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
    let bytes = digest.as_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    let point = (u64::from_be_bytes(first) % 1000) as u32;
    let mut upper = 0;
    for (i, arm) in arms.iter().enumerate() {
        upper += arm.per_mille;
        if point < upper {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::{ChannelType, WorkflowDefinition};
    use serde_json::json;

    fn feed(_: &str) -> Option<ChannelType> {
        Some(ChannelType::InAppFeed)
    }

    fn step(r: &str) -> serde_json::Value {
        json!({"type": "channel", "ref": r, "channel_key": "feed", "template": {"markdown_body": r}})
    }

    #[test]
    fn branches_flatten_with_jumps_past_the_step() {
        let def = WorkflowDefinition::parse(
            &json!({"name": "W", "steps": [
                step("a"),
                {"type": "branch", "ref": "b", "branches": [
                    {"name": "pro", "conditions": {"all": [{"variable": "recipient.plan", "operator": "equal_to", "argument": "pro"}]},
                     "steps": [step("p1"), step("p2")], "terminates": true},
                    {"name": "default", "steps": [step("d1")]}
                ]},
                step("z")
            ]}),
            &feed,
        )
        .expect("valid");
        let p = &def.program;
        assert!(matches!(&p[0], Node::Step(s) if s.step_ref == "a"));
        let Node::Branch { arms, after, .. } = &p[1] else {
            panic!("branch expected, got {:?}", p[1]);
        };
        assert_eq!(arms.iter().map(|a| a.start).collect::<Vec<_>>(), vec![2, 5]);
        assert_eq!(*after, 7);
        assert!(matches!(&p[4], Node::Halt { step_ref } if step_ref == "b"));
        assert!(matches!(&p[6], Node::Goto(7)));
        assert!(matches!(&p[7], Node::Step(s) if s.step_ref == "z"));
        assert_eq!(def.find_step("d1").map(|(i, _)| i), Some(5));
    }

    #[test]
    fn cohorts_are_deterministic_and_follow_the_shares() {
        let arms = vec![
            CohortArm {
                name: "a".into(),
                per_mille: 250,
                start: 0,
            },
            CohortArm {
                name: "b".into(),
                per_mille: 750,
                start: 0,
            },
        ];
        let mut counts = [0usize; 2];
        for i in 0..4000 {
            let key = format!("user-{i}");
            let first = cohort_index("exp", &key, &arms).expect("an arm");
            assert_eq!(cohort_index("exp", &key, &arms), Some(first));
            counts[first] += 1;
        }
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        let zero = vec![
            CohortArm {
                name: "a".into(),
                per_mille: 0,
                start: 0,
            },
            CohortArm {
                name: "b".into(),
                per_mille: 1000,
                start: 0,
            },
        ];
        assert!((0..200).all(|i| cohort_index("exp", &i.to_string(), &zero) == Some(1)));
    }
}
