"""Topic lexicons of the conversation arcs: nouns | verbs | adjectives.

A conversation picks one topic of its arc; its turns draw a share of their
words from it, which is what keeps replies on the subject of the previous
turn and gives every arc its own vocabulary.
"""

from __future__ import annotations


def _parse(src: str) -> dict[str, tuple[tuple[str, ...], ...]]:
  """``name: nouns | verbs | adjectives`` entries separated by blank lines."""
  topics = {}
  for entry in src.strip().split("\n\n"):
    name, body = entry.split(":", 1)
    parts = [tuple(dict.fromkeys(p.split())) for p in body.split("|")]
    if len(parts) != 3 or not all(parts):
      raise ValueError(f"topic {name.strip()!r} needs nouns | verbs | adjs")
    topics[name.strip()] = tuple(parts)
  return topics


_FRIENDLY = """
cooking: recipe oven curry risotto dumpling stew casserole spice saffron basil
oregano lasagne omelette crumble skillet marinade dessert brunch leftovers |
bake simmer roast season taste chop grate marinate | spicy crispy homemade
savoury zesty tender

gardening: tulip rose seedling compost greenhouse hedge weed trowel allotment
sunflower daffodil marigold wheelbarrow hose lavender rhubarb slug | plant
water prune dig sow harvest weed mulch | blooming leafy muddy overgrown
fragrant sunny

travel: passport hostel itinerary luggage souvenir ferry guidebook backpack
sunset temple postcard visa hammock sleeper jetlag | book pack explore visit
wander hitchhike backpack | scenic remote exotic touristy breathtaking
sleepless

football: goal penalty referee striker midfielder league tournament stadium
jersey trophy offside corner header substitute equaliser | score tackle
defend cheer kick dribble | thrilling tactical unbeaten defensive

music: album melody chorus violin saxophone drummer lyrics festival vinyl
playlist harmony ukulele cello tambourine encore verse | rehearse perform
strum record hum compose | catchy acoustic soulful upbeat melancholy

pets: kitten puppy hamster parrot leash collar vet aquarium goldfish tortoise
basket whisker paw kennel treat | feed walk groom adopt train cuddle | fluffy
playful loyal mischievous sleepy

hiking: trail summit compass ridge boots waterfall campsite lantern blister
meadow valley cairn rucksack stream | climb camp navigate explore rest trek |
rocky steep misty rugged peaceful

photography: lens tripod shutter aperture exposure portrait landscape
darkroom negative flash silhouette snapshot | capture frame focus develop
zoom | grainy blurry candid panoramic

board_games: chessboard knight bishop rook pawn dice token scoreboard deck
jigsaw tournament checkmate domino | shuffle deal bluff roll cheat |
competitive tactical lucky sneaky

cycling: saddle pedal handlebar gear chain puncture helmet peloton sprint
velodrome pannier spoke | pedal cycle coast overtake pump | uphill downhill
punctured aerodynamic

books: chapter paperback hardback novelist plot villain heroine epilogue
library bookmark sequel trilogy poetry | borrow recommend finish skim reread |
gripping predictable poetic unputdownable

fishing: rod reel bait hook trout salmon riverbank tackle net float angler
pike carp | cast catch reel release wade | patient slippery muddy tranquil
"""

_ARGUMENT = """
chores: dishes laundry rubbish hoover rota sink fridge bathroom mess
recycling crumbs mould ironing | clean wash tidy ignore forget scrub | filthy
unfair lazy disgusting

money: debt loan cheque invoice savings budget overdraft refund wages receipt
bill subscription instalment | owe borrow repay spend waste | broke reckless
stingy expensive

parking: driveway permit garage bumper scratch ticket warden kerb hatchback
dent clamp | park block scratch reverse tow | illegal careless selfish narrow

deadline: deadline draft spreadsheet client manager proposal milestone
overtime slides feedback timeline | delay miss blame rush finish |
late sloppy unrealistic urgent

noise: neighbours music drill party stereo bass wall ceiling complaint curfew
footsteps barking | shout bang complain knock ignore | deafening
inconsiderate rowdy

holiday_plans: flight villa beach resort camping caravan budget schedule
cottage cruise | cancel book argue choose insist | overpriced boring crowded

inheritance: will solicitor estate heirloom inheritance executor jewellery
cottage antique portrait | inherit contest divide sell promise | greedy
sentimental entitled

wedding: wedding venue guestlist bridesmaid caterer marquee speech cake
seating veil | invite plan cater seat postpone | extravagant tacky formal

heating: thermostat radiator boiler heating bill draught window blanket
meter | freeze waste insulate adjust | freezing stuffy wasteful

borrowed_car: car windscreen petrol mileage mirror dent insurance keys
satnav | borrow crash return refuel insure | reckless uninsured dented
"""

_TECHNICAL = """
databases: table index query transaction schema replica cache shard cursor
record column migration | query index replicate commit cache migrate |
relational consistent durable distributed

compilers: parser lexer token syntax tree register bytecode optimiser linker
function variable stack heap | compile parse optimise link inline allocate |
static dynamic recursive efficient

networks: packet router protocol bandwidth latency socket server firewall
cable signal handshake header | transmit route encrypt buffer connect
retransmit | wireless encrypted reliable congested

batteries: lithium electrode anode cathode voltage current charge cell
electrolyte capacity separator dendrite | charge discharge store convert
degrade | rechargeable chemical electric portable

bridges: beam arch cable pillar steel concrete load tension truss foundation
span girder rivet | support distribute bend carry reinforce | structural
rigid suspended sturdy

telescopes: lens mirror galaxy planet orbit eyepiece nebula comet focus
aperture refractor reflector | magnify observe focus reflect track |
optical distant faint celestial

bread: yeast dough gluten flour crust oven starter fermentation loaf proof
crumb banneton | knead rise ferment bake shape | sourdough elastic golden airy

learning_machines: model dataset gradient neuron layer weight loss
prediction feature benchmark epoch optimiser | train predict optimise
evaluate label | accurate overfitted statistical noisy

solar_power: panel inverter photon silicon wafer grid sunlight kilowatt
meter rooftop | convert generate export absorb | photovoltaic efficient
renewable

immune_system: antibody antigen vaccine pathogen virus bacteria cell
lymphocyte fever memory | infect neutralise recognise attack remember |
immune viral bacterial adaptive

engines: piston cylinder crankshaft spark plug valve fuel exhaust combustion
torque gearbox | ignite compress rotate accelerate lubricate | mechanical
diesel turbocharged

weather_forecasts: pressure front cyclone humidity satellite radar drizzle
forecast isobar jetstream | predict measure observe simulate |
atmospheric humid unsettled

cryptography: cipher key hash signature certificate prime modulus nonce
password | encrypt decrypt sign verify factor | secure public private
"""

_CONFESSION = """
family: parents childhood argument phone call christmas letter photograph
apology funeral sibling anniversary | forgive miss call visit apologise |
distant estranged tender painful

job_loss: job redundancy manager interview contract career pension office
colleague reference payslip | lose quit apply struggle hide | unemployed
humiliating uncertain

moving_away: flat suitcase city farewell friends removal van hometown
neighbourhood airport | move leave pack settle miss | homesick unfamiliar brave

illness: hospital diagnosis treatment nurse appointment recovery surgery
medicine ward scan | recover worry heal wait visit | fragile frightened hopeful

friendship: friendship trust secret promise birthday message betrayal
reunion gossip | trust betray ignore miss confess | lonely hurt sincere loyal

exams: exam grade university scholarship essay revision results tutor
lecture dissertation | fail revise pass cheat panic | disappointed terrified
relieved

breakup: relationship breakup ring anniversary text flat boyfriend
girlfriend closure | end split cry regret move | heartbroken bitter numb

burnout: burnout workload inbox weekend therapist insomnia holiday routine
pressure | collapse rest cope overwork unplug | drained overwhelmed exhausted

lost_pet: dog cat collar poster shelter microchip garden lead blanket |
search lose find bury mourn | heartbroken guilty empty

stage_fright: stage audition audience microphone spotlight rehearsal
script curtain | freeze forget tremble perform rehearse | petrified
humiliated proud

failed_business: shop cafe loan landlord stock customers accountant debts
lease | close borrow fail gamble rebuild | bankrupt ashamed stubborn
"""

TOPICS: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "friendly_chat": _parse(_FRIENDLY),
    "heated_argument": _parse(_ARGUMENT),
    "technical_explanation": _parse(_TECHNICAL),
    "emotional_confession": _parse(_CONFESSION),
}
