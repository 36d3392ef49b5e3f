from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_save

        from conversations import account_changes, budgets, fulltext, hooks
        from conversations.models import Budget
        from conversations.titles import title_after_first_exchange
        from conversations.tool_approval import apply_tool_policy

        account_changes.connect_signals()
        # A process that knows no budget exists skips their check (conversations.budgets).
        for signal in (post_save, post_delete):
            signal.connect(budgets.budgets_changed, sender=Budget,
                           dispatch_uid=f"budgets-changed-{signal is post_save}")
        # Titles are searched by the same rule as messages; SQLite learns it per connection.
        connection_created.connect(fulltext.register_sqlite_functions,
                                   dispatch_uid="conversations.fulltext")

        # Built-in hooks, registered once per process (ready() may run again in tests).
        if title_after_first_exchange not in hooks.registered("turn_finished"):
            hooks.register("turn_finished", title_after_first_exchange)
        if apply_tool_policy not in hooks.registered("before_tool_call"):
            hooks.register("before_tool_call", apply_tool_policy)
        if budgets.check_before_model not in hooks.registered("before_model"):
            hooks.register("before_model", budgets.check_before_model)
        if budgets.check_before_round not in hooks.registered("before_round"):
            hooks.register("before_round", budgets.check_before_round)
