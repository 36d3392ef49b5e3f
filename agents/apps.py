from django.apps import AppConfig
from django.core.signals import setting_changed
from django.db.models.signals import m2m_changed, post_delete, post_save


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.models import Group

        from agents import definitions, fields
        from agents.models import (
            Agent,
            AgentToolPolicy,
            LanguageModel,
            McpServer,
            McpTool,
            ModelServer,
        )

        # Resolved agents (with their tools) are cached per process: any change to the rows
        # behind them clears it.
        # A deleted group takes its limits with it (a cascade, which sends no m2m_changed).
        for model in (Agent, ModelServer, LanguageModel, McpServer, McpTool, AgentToolPolicy,
                      Group):
            for signal in (post_save, post_delete):
                signal.connect(definitions.agent_rows_changed, sender=model,
                               dispatch_uid=f"agent-cache-{signal is post_save}-{model.__name__}")
        for through in (Agent.tool_servers.through, Agent.tools.through,
                        Agent.allowed_groups.through, McpServer.allowed_groups.through,
                        McpTool.allowed_groups.through):
            m2m_changed.connect(definitions.agent_rows_changed, sender=through,
                                dispatch_uid=f"agent-cache-m2m-{through.__name__}")
        setting_changed.connect(definitions.settings_changed, dispatch_uid="agent-cache-settings")
        setting_changed.connect(fields.key_settings_changed, dispatch_uid="field-keys-settings")
