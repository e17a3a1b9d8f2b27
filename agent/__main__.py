from agent.app.cli import main

main()
