"""The unmodified `openai` Python client (pinned in requirements.txt) against agentid's offline
model: OpenAI(base_url=.../v1) and AzureOpenAI(azure_endpoint=...), streaming and not.

Environment: MODEL_BASE_URL (http://127.0.0.1:PORT), TOKEN (bearer for the model's audience;
sent as the OpenAI api key, which the client sends as a bearer, and as Azure's azure_ad_token),
WRONG_TOKEN (optional: a token the model must refuse).

Prints one JSON object; the Rust test (crates/demo/tests/openai_client.rs) asserts on it.
Exit status is non-zero only on an unexpected Python exception.
"""

import json
import os

import openai

BASE = os.environ["MODEL_BASE_URL"].rstrip("/")
TOKEN = os.environ.get("TOKEN", "no-key")
WRONG = os.environ.get("WRONG_TOKEN")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "whoami",
            "description": "Who is calling",
            "parameters": {"type": "object", "properties": {}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add_note",
            "description": "Add a note",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        },
    },
]


def plain(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Who am I?"}],
        tools=TOOLS,
    )
    call = r.choices[0].message.tool_calls[0]
    # The tool result goes back; the model summarises it.
    r2 = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": "Who am I?"},
            r.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "agent A acting on behalf of demo@agentid.local"},
        ],
        tools=TOOLS,
    )
    return {
        "model": r.model,
        "finish_reason": r.choices[0].finish_reason,
        "tool": call.function.name,
        "arguments": json.loads(call.function.arguments),
        "usage_total": r.usage.total_tokens,
        "summary": r2.choices[0].message.content,
        "summary_finish": r2.choices[0].finish_reason,
    }


def streamed(client, model):
    out = {"tool": "", "arguments": "", "ids": [], "finish": None, "usage_total": None}
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "add a note: buy milk"}],
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            out["usage_total"] = chunk.usage.total_tokens
        for choice in chunk.choices:
            if choice.finish_reason:
                out["finish"] = choice.finish_reason
            for tc in choice.delta.tool_calls or []:
                if tc.id:
                    out["ids"].append(tc.id)
                if tc.function and tc.function.name:
                    out["tool"] += tc.function.name
                if tc.function and tc.function.arguments:
                    out["arguments"] += tc.function.arguments
    out["arguments"] = json.loads(out["arguments"])
    text = ""
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=True
    )
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
    out["text"] = text
    return out


def errors(client, model):
    out = {}
    try:
        client.chat.completions.create(model=model, messages=[])
        out["empty_messages"] = "accepted"
    except openai.BadRequestError as e:
        out["empty_messages"] = {"status": e.status_code, "message": str(e)}
    if WRONG:
        wrong = openai.OpenAI(base_url=BASE + "/v1", api_key=WRONG, max_retries=0)
        try:
            wrong.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            out["wrong_token"] = "accepted"
        except openai.AuthenticationError as e:
            out["wrong_token"] = {"status": e.status_code, "message": str(e)}
    return out


def main():
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key=TOKEN, max_retries=0)
    az = openai.AzureOpenAI(
        azure_endpoint=BASE,
        api_version="2024-10-21",
        azure_ad_token=TOKEN,
        max_retries=0,
    )
    result = {
        "openai": {"plain": plain(oa, "agentid-offline"), "stream": streamed(oa, "agentid-offline")},
        "azure": {"plain": plain(az, "gpt-4o"), "stream": streamed(az, "gpt-4o")},
        "models": [m.id for m in oa.models.list()],
        "errors": errors(oa, "agentid-offline"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
