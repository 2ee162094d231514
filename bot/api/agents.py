"""`/api/v1/agents`: create, list, show and disable agents, and set their presence (admin API keys).

Answers never carry the password hash. Presence set here is the same heartbeat the console sends:
`online: true` counts for `handoff.idle_seconds`, after which the router treats the agent as gone.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from bot.api.deps import ApiKey, HubDep
from bot.handoff.agents import Agent, AgentError, AgentStore, NewAgent

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


class AgentOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    teams: list[str]
    capacity: int
    languages: list[str]
    disabled: bool
    load: int
    online: bool


class AgentList(BaseModel):
    items: list[AgentOut]


class Presence(BaseModel):
    online: bool


def _out(agent: Agent, load: int, online: set[str]) -> AgentOut:
    return AgentOut(id=agent.id, email=agent.email, name=agent.name, role=agent.role, teams=list(agent.teams),
                    capacity=agent.capacity, languages=list(agent.languages), disabled=agent.disabled,
                    load=load, online=agent.id in online and not agent.disabled)


async def _shown(store: AgentStore, agent: Agent) -> AgentOut:
    return _out(agent, await store.load(agent.id), await store.online_ids())


async def _existing(store: AgentStore, agent_id: str) -> Agent:
    agent = await store.get(agent_id)
    if agent is None:
        raise HTTPException(404, f"no agent {agent_id!r}")
    return agent


@router.post("", status_code=201, response_model=AgentOut)
async def create_agent(body: NewAgent, hub: HubDep, _: ApiKey) -> AgentOut:
    try:
        agent = await hub.agents.add(body)
    except AgentError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return await _shown(hub.agents, agent)


@router.get("", response_model=AgentList)
async def list_agents(hub: HubDep, _: ApiKey) -> AgentList:
    agents = await hub.agents.list()
    loads = await hub.agents.loads([a.id for a in agents])
    online = await hub.agents.online_ids()
    return AgentList(items=[_out(a, loads[a.id], online) for a in agents])


@router.get("/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: str, hub: HubDep, _: ApiKey) -> AgentOut:
    return await _shown(hub.agents, await _existing(hub.agents, agent_id))


@router.post("/{agent_id}/disable", response_model=AgentOut)
async def disable_agent(agent_id: str, hub: HubDep, _: ApiKey) -> AgentOut:
    """No more logins or new conversations; the router gives what the agent held back to the queue."""
    await _existing(hub.agents, agent_id)
    return await _shown(hub.agents, await hub.agents.disable(agent_id))


@router.post("/{agent_id}/presence", response_model=AgentOut)
async def set_presence(agent_id: str, body: Presence, hub: HubDep, _: ApiKey) -> AgentOut:
    agent = await _existing(hub.agents, agent_id)
    if body.online and agent.disabled:
        raise HTTPException(409, f"agent {agent_id!r} is disabled")
    await (hub.agents.heartbeat(agent_id) if body.online else hub.agents.set_offline(agent_id))
    return await _shown(hub.agents, agent)
