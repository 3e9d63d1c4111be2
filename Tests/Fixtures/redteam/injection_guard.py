"""A LiteLLM guardrail that refuses requests which try to override the application's instructions.

Loaded by the proxy from the folder of its config.yaml (`guardrail: injection_guard.InstructionOverrideGuard`)
and enabled on a route by naming it in the route's `litellm_params.guardrails`. It looks at every
user and system message before the call (mode pre_call) and, on a match, sets `mock_response` to a
refusal: LiteLLM then answers the chat request with that text (HTTP 200) and never calls the model,
so a red-team tool scores the refusal as a defended attempt. (A guardrail that raises, or returns
a string, makes LiteLLM answer 400, which garak counts as no output at all.) Offline and
deterministic: regular expressions, no model.

LiteLLM's own `detect_prompt_injection` heuristic (verb + adjective + "and start over" phrases,
difflib similarity 0.7) catches none of the five attack instructions of garak's promptinject
probes; this guard targets those instruction-override forms.
"""

import re
from typing import Optional, Union

from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks

REFUSAL = "Refused by the gateway: the request tries to override the application's instructions."

PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(?:ignore|disregard|forget|skip|bypass|override)\b[^.\n]{0,60}\binstructions?\b",
        r"\bstop everything\b",
        r"\bnevermind\b[^\n]{0,80}\b(?:say|print)\b",
        r"\bjust (?:say|print)\s*\"",
    )
]


def texts(data: dict):
    for message in data.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        yield prompt


class InstructionOverrideGuard(CustomGuardrail):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type) -> Optional[Union[Exception, str, dict]]:
        if not self.should_run_guardrail(data=data, event_type=GuardrailEventHooks.pre_call):
            return data
        for text in texts(data):
            if any(p.search(text) for p in PATTERNS):
                # Answered by LiteLLM itself with the refusal; the model is never called.
                data["mock_response"] = REFUSAL
                return data
        return data
