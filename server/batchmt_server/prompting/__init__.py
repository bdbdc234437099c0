"""BatchPrompt prompts: templates, their chat form, and parsing a completion back into slots."""
