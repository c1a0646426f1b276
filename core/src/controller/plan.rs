//! The runtime worker's planner: a pure function from what is wanted and
//! what runs to the steps that close the gap. It reads no clock, calls no
//! port and keeps no state, so it is tested as a table of cases and by a
//! property: executing a plan and planning again gives an empty plan.
//!
//! The executor (`reconcile.rs`) carries the steps out in order and stops at
//! the first failure, so a step listed after another runs only if that one
//! succeeded. That ordering is the safety of an update: old instances are
//! retired only after the new generation's endpoints were published.

use crate::model::{Endpoint, FunctionSpec, Instance, InstanceId, InstanceState};

/// What the planner looks at for one function.
#[derive(Clone, Debug)]
pub struct PlanInput<'a> {
    /// The wanted spec.
    pub spec: &'a FunctionSpec,
    /// Its generation.
    pub generation: u64,
    /// Running instances wanted (the desired scale, clamped to `min..=max`).
    pub wanted: usize,
    /// The function's instances as the runtime lists them, without those
    /// already on their way out (retiring in the background).
    pub instances: &'a [Instance],
    /// Instances being drained on their way into the pool: they count
    /// towards `prewarm`.
    pub retiring_to_pool: usize,
    /// The endpoints the edge was last asked to route for this generation;
    /// `None` when that is not known (after a restart), so they are published again.
    pub published: Option<&'a [Endpoint]>,
    /// Whether the runtime can create an instance without starting it.
    pub can_precreate: bool,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Remove an instance that exited (crash, OOM, killed from outside).
    Remove(InstanceId),
    /// Thaw a paused instance of this generation: the fastest tier.
    Resume(InstanceId),
    /// Start an instance created earlier: the middle tier.
    StartCreated(InstanceId),
    /// Create and start this many new instances: the slowest tier.
    Create(usize),
    /// Route exactly the serving set: the running instances the plan keeps
    /// ([`Plan::keep`]) and those the steps before this one started.
    Publish,
    /// Take a routed instance out of service: after the drain, and once no
    /// request is in flight on it, pause it into the pool or stop it. Runs in
    /// the background, so the function's next reconcile never waits on it.
    Retire {
        /// The instance.
        id: InstanceId,
        /// Pause it into the pool (when idle) instead of stopping it.
        into_pool: bool,
    },
    /// Stop an instance that serves nothing (an extra paused or created one,
    /// an older generation's idle one).
    Stop(InstanceId),
    /// Start this many instances, wait until each is ready, and pause it (the pool).
    Refill(usize),
    /// Create this many instances without starting them.
    Precreate(usize),
}

/// The steps for one function, in the order they must run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
    /// Running instances of this generation that stay routed.
    pub keep: Vec<InstanceId>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    /// Whether the plan starts anything (a cold start for a function at zero).
    pub fn starts(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Resume(_) | Step::StartCreated(_) | Step::Create(_)))
    }
}

fn sorted(mut e: Vec<Endpoint>) -> Vec<Endpoint> {
    e.sort();
    e.dedup();
    e
}

/// The plan, in the order that gets a waiting request served soonest:
/// 1. remove exited instances;
/// 2. run `wanted` instances of this generation, fastest tier first: resume
///    paused ones, then start created ones, then create new ones;
/// 3. publish the serving set if it differs from what the edge was given;
/// 4. retire extras (into the pool while it is short) and every instance of
///    other generations (only reached once step 2 succeeded);
/// 5. keep the pool at `prewarm` paused and `precreate` created instances.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let scaling = input.spec.scaling();
    let prewarm = usize::try_from(scaling.prewarm()).unwrap_or(0);
    let precreate = if input.can_precreate { usize::try_from(scaling.precreate()).unwrap_or(0) } else { 0 };
    let mut steps = Vec::new();
    let (mut running, mut paused, mut created, mut others) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in input.instances {
        if i.state == InstanceState::Exited {
            steps.push(Step::Remove(i.id.clone()));
        } else if i.generation != input.generation {
            others.push(i);
        } else {
            match i.state {
                InstanceState::Running => running.push(i),
                InstanceState::Paused => paused.push(i),
                _ => created.push(i),
            }
        }
    }
    // Keep the routed ones first, so a scale-down retires what the edge has least reason to use.
    let routed = |i: &Instance| input.published.is_some_and(|p| p.contains(&i.endpoint));
    running.sort_by(|a, b| routed(b).cmp(&routed(a)).then_with(|| a.id.cmp(&b.id)));
    paused.sort_by(|a, b| a.id.cmp(&b.id));
    created.sort_by(|a, b| a.id.cmp(&b.id));
    let extras = if running.len() > input.wanted { running.split_off(input.wanted) } else { Vec::new() };
    let keep: Vec<InstanceId> = running.iter().map(|i| i.id.clone()).collect();

    let mut need = input.wanted - running.len();
    let resumed = need.min(paused.len());
    for p in paused.drain(..resumed) {
        steps.push(Step::Resume(p.id.clone()));
    }
    need -= resumed;
    let started = need.min(created.len());
    for c in created.drain(..started) {
        steps.push(Step::StartCreated(c.id.clone()));
    }
    need -= started;
    if need > 0 {
        steps.push(Step::Create(need));
    }
    let serving = sorted(running.iter().map(|i| i.endpoint.clone()).collect());
    let starts = resumed + started + need > 0;
    if starts || input.published.is_none_or(|p| sorted(p.to_vec()) != serving) {
        steps.push(Step::Publish);
    }

    let mut pool = paused.len() + input.retiring_to_pool;
    for e in extras {
        let into_pool = pool < prewarm;
        pool += usize::from(into_pool);
        steps.push(Step::Retire { id: e.id.clone(), into_pool });
    }
    others.sort_by(|a, b| a.id.cmp(&b.id));
    for o in others {
        steps.push(match o.state {
            InstanceState::Running => Step::Retire { id: o.id.clone(), into_pool: false },
            _ => Step::Stop(o.id.clone()),
        });
    }
    let mut surplus = pool.saturating_sub(prewarm);
    while surplus > 0 {
        let Some(p) = paused.pop() else { break };
        steps.push(Step::Stop(p.id.clone()));
        surplus -= 1;
    }
    if pool < prewarm {
        steps.push(Step::Refill(prewarm - pool));
    }
    while created.len() > precreate {
        if let Some(c) = created.pop() {
            steps.push(Step::Stop(c.id.clone()));
        }
    }
    if created.len() < precreate {
        steps.push(Step::Precreate(precreate - created.len()));
    }
    Plan { steps, keep }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FunctionSpecInput, ScalingInput};

    fn spec(prewarm: i64, precreate: i64) -> FunctionSpec {
        let mut input = FunctionSpecInput::image("f", "x", 8080);
        input.scaling = Some(ScalingInput {
            min: Some(0),
            max: Some(8),
            prewarm: Some(prewarm),
            precreate: Some(precreate),
            ..Default::default()
        });
        input.validate().unwrap()
    }

    fn inst(id: &str, generation: u64, state: InstanceState, port: u16) -> Instance {
        Instance {
            id: InstanceId::new(id),
            function: "f".parse().unwrap(),
            generation,
            endpoint: Endpoint::new(([127, 0, 0, 1], port).into()),
            state,
        }
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(([127, 0, 0, 1], port).into())
    }

    use InstanceState::{Created, Exited, Paused, Running};

    fn id(s: &str) -> InstanceId {
        InstanceId::new(s)
    }

    struct Case {
        what: &'static str,
        prewarm: i64,
        precreate: i64,
        wanted: usize,
        instances: Vec<Instance>,
        published: Option<Vec<Endpoint>>,
        retiring_to_pool: usize,
        expect: Vec<Step>,
    }

    #[test]
    fn the_table() {
        let cases = vec![
            Case {
                what: "a new function: create one, publish it, fill the pool",
                prewarm: 1,
                precreate: 0,
                wanted: 1,
                instances: vec![],
                published: None,
                retiring_to_pool: 0,
                expect: vec![Step::Create(1), Step::Publish, Step::Refill(1)],
            },
            Case {
                what: "converged: nothing to do",
                prewarm: 1,
                precreate: 0,
                wanted: 1,
                instances: vec![inst("a", 2, Running, 1), inst("p", 2, Paused, 2)],
                published: Some(vec![ep(1)]),
                retiring_to_pool: 0,
                expect: vec![],
            },
            Case {
                what: "at zero, a request: resume the paused one first, then refill",
                prewarm: 1,
                precreate: 0,
                wanted: 1,
                instances: vec![inst("p", 2, Paused, 2)],
                published: Some(vec![]),
                retiring_to_pool: 0,
                expect: vec![Step::Resume(id("p")), Step::Publish, Step::Refill(1)],
            },
            Case {
                what: "no pool: start a created one before creating",
                prewarm: 0,
                precreate: 1,
                wanted: 2,
                instances: vec![inst("c", 2, Created, 0)],
                published: Some(vec![]),
                retiring_to_pool: 0,
                expect: vec![Step::StartCreated(id("c")), Step::Create(1), Step::Publish, Step::Precreate(1)],
            },
            Case {
                what: "a crashed instance: remove it and replace it",
                prewarm: 0,
                precreate: 0,
                wanted: 1,
                instances: vec![inst("dead", 2, Exited, 1)],
                published: Some(vec![ep(1)]),
                retiring_to_pool: 0,
                expect: vec![Step::Remove(id("dead")), Step::Create(1), Step::Publish],
            },
            Case {
                what: "a route lost after a restart: publish again, start nothing",
                prewarm: 0,
                precreate: 0,
                wanted: 1,
                instances: vec![inst("a", 2, Running, 1)],
                published: None,
                retiring_to_pool: 0,
                expect: vec![Step::Publish],
            },
            Case {
                what: "scale down to zero: the extra goes into the empty pool",
                prewarm: 1,
                precreate: 0,
                wanted: 0,
                instances: vec![inst("a", 2, Running, 1)],
                published: Some(vec![ep(1)]),
                retiring_to_pool: 0,
                expect: vec![Step::Publish, Step::Retire { id: id("a"), into_pool: true }],
            },
            Case {
                what: "scale down with a full pool: keep the routed one, stop the other",
                prewarm: 1,
                precreate: 0,
                wanted: 1,
                instances: vec![inst("a", 2, Running, 1), inst("b", 2, Running, 3), inst("p", 2, Paused, 2)],
                published: Some(vec![ep(3)]),
                retiring_to_pool: 0,
                expect: vec![Step::Retire { id: id("a"), into_pool: false }],
            },
            Case {
                what: "an update: new ones first, then the old generation retires and its pool stops",
                prewarm: 1,
                precreate: 0,
                wanted: 1,
                instances: vec![inst("old", 1, Running, 1), inst("oldp", 1, Paused, 2)],
                published: None,
                retiring_to_pool: 0,
                expect: vec![
                    Step::Create(1),
                    Step::Publish,
                    Step::Retire { id: id("old"), into_pool: false },
                    Step::Stop(id("oldp")),
                    Step::Refill(1),
                ],
            },
            Case {
                what: "one on its way into the pool counts: no refill, the surplus paused one stops",
                prewarm: 1,
                precreate: 0,
                wanted: 0,
                instances: vec![inst("p", 2, Paused, 2)],
                published: Some(vec![]),
                retiring_to_pool: 1,
                expect: vec![Step::Stop(id("p"))],
            },
            Case {
                what: "too many created ones: stop the extra",
                prewarm: 0,
                precreate: 1,
                wanted: 0,
                instances: vec![inst("c1", 2, Created, 0), inst("c2", 2, Created, 0)],
                published: Some(vec![]),
                retiring_to_pool: 0,
                expect: vec![Step::Stop(id("c2"))],
            },
        ];
        for c in cases {
            let spec = spec(c.prewarm, c.precreate);
            let got = plan(&PlanInput {
                spec: &spec,
                generation: 2,
                wanted: c.wanted,
                instances: &c.instances,
                retiring_to_pool: c.retiring_to_pool,
                published: c.published.as_deref(),
                can_precreate: true,
            });
            assert_eq!(got.steps, c.expect, "{}", c.what);
        }
    }

    #[test]
    fn a_runtime_without_created_instances_gets_no_precreate() {
        let spec = spec(0, 2);
        let got = plan(&PlanInput {
            spec: &spec,
            generation: 1,
            wanted: 0,
            instances: &[],
            retiring_to_pool: 0,
            published: Some(&[]),
            can_precreate: false,
        });
        assert!(got.is_empty(), "{got:?}");
    }

    /// The world the property test runs plans against: the executor's
    /// effects, without a runtime.
    struct World {
        instances: Vec<Instance>,
        published: Option<Vec<Endpoint>>,
        retiring_to_pool: usize,
        next: u16,
    }

    impl World {
        fn fresh(&mut self, generation: u64, state: InstanceState) -> Instance {
            self.next += 1;
            inst(&format!("new{}", self.next), generation, state, 10_000 + self.next)
        }

        /// Executes `plan` the way the executor does; background retirements complete at once.
        fn execute(&mut self, plan: &Plan, generation: u64) {
            let mut started = Vec::new();
            for step in &plan.steps {
                match step {
                    Step::Remove(id) | Step::Stop(id) => self.instances.retain(|i| &i.id != id),
                    Step::Resume(id) | Step::StartCreated(id) => {
                        let i = self.instances.iter_mut().find(|i| &i.id == id).unwrap();
                        i.state = InstanceState::Running;
                        started.push(i.endpoint.clone());
                    }
                    Step::Create(n) => {
                        for _ in 0..*n {
                            let i = self.fresh(generation, InstanceState::Running);
                            started.push(i.endpoint.clone());
                            self.instances.push(i);
                        }
                    }
                    Step::Publish => {
                        let mut serving: Vec<Endpoint> = self
                            .instances
                            .iter()
                            .filter(|i| plan.keep.contains(&i.id))
                            .map(|i| i.endpoint.clone())
                            .chain(started.iter().cloned())
                            .collect();
                        serving.sort();
                        self.published = Some(serving);
                    }
                    Step::Retire { id, into_pool } => {
                        if *into_pool {
                            self.instances.iter_mut().find(|i| &i.id == id).unwrap().state = InstanceState::Paused;
                        } else {
                            self.instances.retain(|i| &i.id != id);
                        }
                    }
                    Step::Refill(n) => {
                        for _ in 0..*n {
                            let i = self.fresh(generation, InstanceState::Paused);
                            self.instances.push(i);
                        }
                    }
                    Step::Precreate(n) => {
                        for _ in 0..*n {
                            let i = self.fresh(generation, InstanceState::Created);
                            self.instances.push(i);
                        }
                    }
                }
            }
            // Background retirements into the pool have landed.
            self.retiring_to_pool = 0;
        }
    }

    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = InstanceState> {
        prop_oneof![Just(Running), Just(Paused), Just(Created), Just(Exited)]
    }

    proptest! {
        /// Executing a plan, then planning again, gives an empty plan.
        #[test]
        fn planning_twice_gives_an_empty_plan(
            existing in proptest::collection::vec((1u64..=2, any_state(), any::<bool>()), 0..8),
            wanted in 0usize..5,
            prewarm in 0i64..3,
            precreate in 0i64..3,
            can_precreate in any::<bool>(),
            knows_published in any::<bool>(),
        ) {
            let spec = spec(prewarm, precreate);
            let instances: Vec<Instance> = existing
                .iter()
                .enumerate()
                .map(|(n, (g, s, _))| inst(&format!("i{n}"), *g, *s, 1000 + u16::try_from(n).unwrap()))
                .collect();
            let published: Vec<Endpoint> =
                instances.iter().zip(&existing).filter(|(_, (_, _, r))| *r).map(|(i, _)| i.endpoint.clone()).collect();
            let mut world = World {
                instances,
                published: knows_published.then_some(published),
                retiring_to_pool: 0,
                next: 0,
            };
            let input = |w: &World| PlanInput {
                spec: &spec,
                generation: 2,
                wanted,
                instances: &[],
                retiring_to_pool: w.retiring_to_pool,
                published: None,
                can_precreate,
            };
            let first = plan(&PlanInput { instances: &world.instances, published: world.published.as_deref(), ..input(&world) });
            world.execute(&first, 2);
            let second = plan(&PlanInput { instances: &world.instances, published: world.published.as_deref(), ..input(&world) });
            prop_assert!(second.is_empty(), "first {:?}\nthen {:?}\nworld {:?}", first.steps, second.steps, world.instances);
            let running = world.instances.iter().filter(|i| i.generation == 2 && i.state == Running).count();
            prop_assert_eq!(running, wanted);
            prop_assert!(world.instances.iter().all(|i| i.generation == 2 && i.state != Exited));
        }
    }
}
